"""The original repository's ``reasoning_datasets.py`` (top level), thin over ``high_to_low.reasoning_datasets``.

    from reasoning_datasets import ParityDataset, QAPairDataset, RandomPruferExpressionDataset
    python reasoning_datasets.py --dataset_name parity --out_dir data/parity --num_train 1000
"""

from high_to_low.reasoning_datasets import (  # noqa: F401  (re-exported for the original's imports)
    DATASETS,
    INSTRUCTIONS,
    SEEDS,
    ParityDataset,
    QAPairDataset,
    RandomPruferExpressionDataset,
    WordTokenizer,
    answer_text,
    arithmetic_example,
    generate,
    load_split,
    main,
    parity_example,
    parse_qa_lines,
    prompt_text,
    prufer_to_edges,
    write_qa_lines,
)

if __name__ == "__main__":
    main()
