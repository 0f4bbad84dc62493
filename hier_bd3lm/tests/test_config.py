"""Hydra-style overrides of the README parse; aliases; validation errors are one clear line.

python -m pytest tests/test_config.py -q
"""

import subprocess
import sys

import pytest
from conftest import PROJECT

from hier_bd3lm.config import layout_of, parse_overrides
from shared_utils.errors import UserError

README = ["mode=train", "model=tiny", "training.max_steps=1000", "training.hierarchical.enabled=true",
          "data.train_path=data/gsm8k/gsm8k_hierarchical_train.json"]


def test_readme_quick_start_overrides():
    cfg = parse_overrides(README)
    assert cfg.trainer.max_steps == 1000 and cfg.model.name == "tiny" and cfg.model.hidden_size == 256
    assert cfg.training.hierarchical.enabled and cfg.data.train_path.endswith("train.json")
    assert cfg.model.length == 512 and layout_of(cfg).total_len == 512


def test_aliases_and_guide_keys():
    cfg = parse_overrides(["training.batch_size=8", "training.learning_rate=1e-4", "training.block_size=8",
                           "data.name=gsm8k", "algo=bd3lm", "model=small", "model.length=512", "block_size=8",
                           "eval.checkpoint_path=x.ckpt", "sampling.num_sample_batches=3", "data=gsm8k",
                           "data.test_path=t.json", "training.hierarchical.total_len=512"])
    assert cfg.loader.batch_size == 8 and cfg.optim.lr == 1e-4 and cfg.block_size == 8
    assert cfg.sampling.num_sample_batches == 3 and cfg.data.test_path == "t.json"


def test_flat_layout_length():
    cfg = parse_overrides(["training.hierarchical.enabled=false"])
    assert cfg.model.length == 384 and layout_of(cfg).plan_len == 0


def test_mdlm_is_one_block():
    assert parse_overrides(["algo=mdlm", "training.hierarchical.enabled=false"]).block_size == 256
    with pytest.raises(UserError, match="plan would attend to the execution"):
        parse_overrides(["algo=mdlm"])  # one block over [P | E] would let the plan see the execution


@pytest.mark.parametrize("args,msg", [
    (["training.hierarchical.plan_len=100"], "do not add up"),
    (["block_size=48"], "does not divide"),
    (["model.length=500"], "model.length"),
    (["training.nonexistent=1"], "bad config"),
    (["model=huge"], "unknown model config"),
    (["mode=generate"], "mode must be"),
    (["sampling.nucleus_p=0"], "nucleus_p"),
    (["trainer.max_steps=abc"], "bad config"),
    (["justaword"], "key=value"),
    (["optim.lr=-1e-3"], "optim.lr must be > 0"),
    (["optim.lr=0"], "optim.lr must be > 0"),
    (["loader.batch_size=0"], "batch_size"),
    (["training.ema=1.5"], "training.ema"),
    (["data.max_vocab=-5"], "max_vocab"),
])
def test_bad_configs(args, msg):
    with pytest.raises(UserError, match=msg):
        parse_overrides(args)


def test_main_rejects_bad_input_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "main.py", "training.hierarchical.exec_len=100"], cwd=PROJECT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "do not add up" in r.stderr
    r = subprocess.run([sys.executable, "main.py", "mode=ppl_eval", f"eval.checkpoint_path={tmp_path}/none.ckpt"],
                       cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and r.stderr.strip().count("\n") == 0
