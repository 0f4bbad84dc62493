"""Train with the README's command line (HF Trainer with --use_trainer, else the manual loop).

    python scripts/train_superrelora.py --config training_configs/superrelora_160m.yaml --use_trainer
    python scripts/train_superrelora.py --config training_configs/smoke_cpu.yaml --merge_every 2 --max_steps 6
"""

from shared_utils.errors import cli_main
from superrelora.cli import main

if __name__ == "__main__":
    cli_main(main)()
