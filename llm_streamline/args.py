"""The original's ``args.py`` (model_name, layer_intervals, cosine_num_data, train_num_data, batch_size,
gradient_accumulation_step, epoches, lr, min_lr, wd, output_dir, ...): defaults live in
``src/llm_streamline/args.py``; every field is also a flag. ``python args.py --help`` lists them.
"""

from llm_streamline.args import ModelArguments, TrainingArguments, parse_args  # noqa: F401

if __name__ == "__main__":
    from shared_utils.errors import cli_main

    print(cli_main(parse_args)())
