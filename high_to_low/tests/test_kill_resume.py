"""train.py killed with SIGKILL at a random step (after >= 1 checkpoint) and rerun ends with the same weights, optimizer
state and loss tracking as an uninterrupted run (CPU, atol 1e-6), for the method and the baseline.

    python -m pytest tests/test_kill_resume.py -q
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from high_to_low.training import build_parser, checkpoint_folder, train

ROOT = Path(__file__).resolve().parent.parent
STEPS = 12
TINY = ["--model_name", "tiny", "--tiny_layers", "2", "--dataset_name", "parity", "--seq_len", "6", "--batch_size",
        "8", "--num_train", str(8 * STEPS), "--lr", "1e-3", "--warmup_steps", "2", "--period", "10", "--device", "cpu",
        "--threads", "1", "--save_interval", "1", "--group_size", "2"]


def _kill_at_random_step(cmd, folder: Path, rng: random.Random) -> int:
    """Start train.py, SIGKILL it once training_state_k.json exists for a random k in [1, STEPS - 2]."""
    target = rng.randint(1, STEPS - 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (folder / f"training_state_{target}.json").exists():
        if proc.poll() is not None:
            pytest.fail(f"train.py ended before step {target}: {proc.stderr.read().decode()[-500:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("train.py made no progress in 120 s")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return target


@pytest.mark.parametrize("our_method", ["True", pytest.param("False", marks=pytest.mark.slow)])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, our_method):
    flags = TINY + ["--our_method", our_method]
    straight = train(build_parser().parse_args(flags + ["--checkpoint_root_folder", str(tmp_path / "a")]))
    root = tmp_path / "b"
    folder = checkpoint_folder(root, our_method == "True", "tiny", "parity")
    seed = random.randrange(10**6)
    killed_after = _kill_at_random_step([sys.executable, "train.py", *flags, "--checkpoint_root_folder", str(root)],
                                        folder, random.Random(seed))
    assert not (folder / f"training_state_{STEPS}.json").exists(), f"the run finished before the kill (seed {seed})"
    resumed = train(build_parser().parse_args(flags + ["--checkpoint_root_folder", str(root)]))
    a, b = torch.load(straight / f"pretrain_improved_{STEPS}.pth"), torch.load(resumed / f"pretrain_improved_{STEPS}.pth")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=f"{k} (killed after step {killed_after})")
    oa = torch.load(straight / f"optimizer_state_{STEPS}.pth")["state"]
    ob = torch.load(resumed / f"optimizer_state_{STEPS}.pth")["state"]
    for k in oa:
        torch.testing.assert_close(oa[k]["exp_avg"], ob[k]["exp_avg"], atol=1e-6, rtol=0)
    ta = json.loads((straight / f"loss_tracking_{STEPS}.json").read_text())
    tb = json.loads((resumed / f"loss_tracking_{STEPS}.json").read_text())
    assert len(ta) == len(tb) == STEPS and max(abs(x - y) for x, y in zip(ta, tb)) <= 1e-6
