"""Entry point with Hydra-style overrides, as in bd3lms and the README.

python main.py mode=train model=tiny training.max_steps=1000 training.hierarchical.enabled=true \
    data.train_path=data/gsm8k/gsm8k_hierarchical_train.json
python main.py mode=ppl_eval eval.checkpoint_path=outputs/run/checkpoints/last.ckpt data.test_path=...
python main.py mode=sample_eval eval.checkpoint_path=... sampling.num_sample_batches=2 sampling.kv_cache=true
"""

import sys

from hier_bd3lm.cli import run
from shared_utils.errors import cli_main


@cli_main
def main():
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
