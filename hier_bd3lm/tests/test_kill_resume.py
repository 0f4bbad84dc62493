"""`kill -9` at a random step after a checkpoint, then resume: the same final weights and EMA as an uninterrupted
run (main.py mode=train is the project's only training entry point; make_table/twin_table call the same train()).

python -m pytest tests/test_kill_resume.py -q
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FIXTURES, PROJECT

from hier_bd3lm.config import parse_overrides
from hier_bd3lm.train import checkpoint_path, train

STEPS = 14
ARGS = ["model=micro", "data.tokenizer=char", f"data.train_path={FIXTURES / 'hier_gsm8k_train.json'}",
        f"data.test_path={FIXTURES / 'hier_gsm8k_test.json'}", "training.hierarchical.question_len=16",
        "training.hierarchical.plan_len=16", "training.hierarchical.exec_len=32", "training.hierarchical.total_len=64",
        "block_size=8", "loader.batch_size=4", "loader.eval_batch_size=4", "data.limit_valid=4",
        "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "trainer.val_check_interval=1",
        "lr_scheduler.num_warmup_steps=2", "model.dropout=0.1", "trainer.device=cpu", f"trainer.max_steps={STEPS}"]


def _saved_steps(metrics):
    if not metrics.is_file():
        return 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip().endswith("}")]
    return max([r["step"] for r in rows if "val/nll" in r], default=0)


@pytest.mark.parametrize("algo", ["bd3lm"])
def test_kill9_then_resume_matches_uninterrupted(tmp_path, algo):
    full = train(parse_overrides(ARGS + [f"algo={algo}", f"checkpointing.save_dir={tmp_path / 'a'}"]))
    run = tmp_path / "b"
    cmd = [sys.executable, "main.py", "mode=train", *ARGS, f"algo={algo}", f"checkpointing.save_dir={run}"]
    target = random.randint(2, STEPS - 4)  # kill after the checkpoint of this step (random, printed on failure)
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpt = run / "checkpoints" / "last.ckpt"
    while _saved_steps(run / "metrics.jsonl") < target or not ckpt.is_file():
        assert proc.poll() is None, f"training ended before the kill (target step {target})"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 1 <= killed_at < STEPS, (target, killed_at)
    r = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(full["checkpoint"], weights_only=False)
    b = torch.load(checkpoint_path(parse_overrides(ARGS + [f"checkpointing.save_dir={run}"])), weights_only=False)
    assert a["step"] == b["step"] == STEPS
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6, msg=f"{k} (killed at {killed_at})")
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"]):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    assert abs(json.loads(r.stdout)["nll"] - full["nll"]) < 1e-6
