"""Evaluate every checkpoint of an improved (TurboConn) training run.

    python evaluation.py --test True \
        --checkpoint_folder "./checkpoints/improved_training_checkpoint_test_Llama-3.1-8B_gsm8k" \
        --dataset_name "gsm8k" --batch_size 64 --result_folder "./results" --gpu_memory_limit "35GiB"

Writes {model}_improved_results.json ({"<step>": mean answer probability}), {model}_improved_greedy_em.json
and {model}_improved_predictions_<step>.jsonl.
"""

from high_to_low.evaluate import build_parser, run_evaluation
from shared_utils.errors import cli_main


@cli_main
def main(argv=None):
    run_evaluation(build_parser(transformer=False).parse_args(argv), transformer=False)


if __name__ == "__main__":
    main()
