"""MSE-loss LLM-Streamline (single device), as in the original: ``python mseloss_entry.py [--flag value ...]``.

Offline / CPU example (embedded SmolLM2-135M-Instruct, embedded text):
    python mseloss_entry.py --model_name smollm2-135m --data_path embedded --seq_len 128 --train_num_data 64 \
        --cosine_num_data 16 --num_test_blocks 8 --gradient_accumulation_step 2 --output_dir runs/mse
"""

from llm_streamline.mse_train import run
from shared_utils.errors import cli_main

if __name__ == "__main__":
    cli_main(run)()
