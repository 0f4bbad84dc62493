"""Data-parallel training (issue 17): torchrun with 2 CPU processes (gloo), per-rank batch B/2, equals one process
with batch B (max abs difference <= 1e-5), the method and the baseline; resume of a 2-rank run works.

    python -m pytest tests/test_multiproc.py -q -m slow
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from high_to_low.training import build_parser, checkpoint_folder, train

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--model_name", "tiny", "--tiny_layers", "2", "--dataset_name", "parity", "--seq_len", "6", "--batch_size",
         "8", "--num_train", "48", "--lr", "1e-3", "--warmup_steps", "2", "--device", "cpu", "--threads", "1",
         "--group_size", "2", "--total_epochs", "1"]


def torchrun(flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "train.py", *flags]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("our_method", ["True", "False"])
def test_two_processes_equal_one(tmp_path, our_method):
    flags = FLAGS + ["--our_method", our_method]
    one = train(build_parser().parse_args(flags + ["--checkpoint_root_folder", str(tmp_path / "one")]))
    # two ranks, killed after 3 steps and resumed to 6: resume of a multi-rank run
    torchrun(flags + ["--checkpoint_root_folder", str(tmp_path / "two"), "--max_steps", "3", "--save_interval", "3"])
    torchrun(flags + ["--checkpoint_root_folder", str(tmp_path / "two")])
    two = checkpoint_folder(tmp_path / "two", our_method == "True", "tiny", "parity")
    a, b = torch.load(one / "pretrain_improved_6.pth"), torch.load(two / "pretrain_improved_6.pth")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6  # rank 0 logs once per step
