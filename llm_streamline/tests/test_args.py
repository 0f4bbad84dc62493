"""args.py keeps the original's names and defaults; every field is a flag.  python -m pytest tests/test_args.py -q"""

import pytest

from llm_streamline.args import parse_args
from shared_utils.errors import UserError

ORIGINAL_DEFAULTS = {
    "model_name": "meta-llama/Llama-3.1-8B", "use_fast": True, "output_dir": "./pruned_model", "layer_intervals": 8,
    "cosine_num_data": 50, "train_num_data": 100000, "batch_size": 8, "gradient_accumulation_step": 16, "epoches": 1,
    "lr": 2e-4, "min_lr": 5e-5, "wd": 1e-3,
}


def test_original_defaults():
    model_args, args = parse_args([])
    got = {**vars(model_args), **vars(args)}
    assert {k: got[k] for k in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    assert args.seq_len == 2048 and args.data_path == "DKYoon/SlimPajama-6B" and args.lightweight == "layer"


def test_flags_override():
    _, args = parse_args(["--layer_intervals", "4", "--lightweight", "swiglu", "--num_lightweight_layers", "2"])
    assert (args.layer_intervals, args.lightweight, args.num_lightweight_layers) == (4, "swiglu", 2)


@pytest.mark.parametrize("argv,msg", [
    (["--layer_intervals", "0"], "--layer_intervals must be at least 1"),
    (["--min_lr", "1"], "min_lr <= lr"),
    (["--lightweight", "ffn", "--num_lightweight_layers", "2"], "one FFN"),
    (["--lr_schedule", "linear"], "--lr_schedule must be one of"),
])
def test_invalid_values(argv, msg):
    with pytest.raises(UserError, match=msg):
        parse_args(argv)
