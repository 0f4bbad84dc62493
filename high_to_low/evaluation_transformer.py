"""Evaluate every checkpoint of a baseline (transformer, LoRA only) training run.

    python evaluation_transformer.py \
        --checkpoint_folder "./checkpoints/transformer_training_checkpoint_test_Llama-3.1-8B_gsm8k" \
        --dataset_name "gsm8k" --batch_size 64 --result_folder "./results" --gpu_memory_limit "35GiB"

Writes {model}_transformer_results.json, {model}_transformer_greedy_em.json and per-step predictions.
"""

from high_to_low.evaluate import build_parser, run_evaluation
from shared_utils.errors import cli_main


@cli_main
def main(argv=None):
    run_evaluation(build_parser(transformer=True).parse_args(argv), transformer=True)


if __name__ == "__main__":
    main()
