"""LLM-loss LLM-Streamline under Accelerate, as in the original:

    CUDA_VISIBLE_DEVICES=0,1,2,3 accelerate launch --config_file 4gpu.yaml llmloss_entry.py

Single process (CPU or one GPU): ``python llmloss_entry.py --model_name smollm2-135m --data_path embedded ...``;
two CPU processes: ``torchrun --nproc_per_node 2 llmloss_entry.py --device cpu ...``.
"""

from llm_streamline.llm_train import run
from shared_utils.errors import cli_main

if __name__ == "__main__":
    cli_main(run)()
