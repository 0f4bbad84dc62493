"""Train with high-to-low connections (--our_method True) or the LoRA baseline (False).

    python train.py --our_method True --model_name "meta-llama/Llama-3.1-8B" --dataset_name "gsm8k" \
        --checkpoint_root_folder "./checkpoints" --batch_size 64 --group_size 4 --split_batch_into 1 \
        --save_interval 1000 --total_epochs 3 --multiplier 100 --gpu_memory_limit "35GiB"

CPU example: --model_name tiny --dataset_name parity --seq_len 16 --num_train 32000 --lr 1e-3 --max_steps 500
"""

from high_to_low.training import build_parser, train
from shared_utils.errors import cli_main


@cli_main
def main(argv=None):
    folder = train(build_parser().parse_args(argv))
    print(f"checkpoints in {folder}")


if __name__ == "__main__":
    main()
