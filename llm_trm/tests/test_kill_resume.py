"""kill -9 mid-run, then --resume: the same final weights as an uninterrupted run, for every train script.

    python -m pytest tests/test_kill_resume.py -q

Phase 1 (mid-run checkpoints every N optimizer steps) and phase 2 (``last.pt`` every epoch) are each run once
uninterrupted in-process, once in a subprocess killed with SIGKILL at a random step after its first
checkpoint, and resumed in-process; final weights must agree to 1e-6 (CPU, fp32).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]


def _kill_when(cmd: list[str], ckpt: Path, ready, timeout: float = 120.0) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``ready(checkpoint dict)`` is true."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if proc.poll() is not None:
                raise AssertionError(f"run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            if ckpt.exists():
                try:
                    ck = torch.load(ckpt, weights_only=True)
                except Exception:  # noqa: BLE001 - mid-replace: try again
                    ck = None
                if ck is not None and ready(ck):
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return
            time.sleep(0.02)
        raise AssertionError("no checkpoint in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_phase1_kill_resume_equals_uninterrupted(tmp_path, tiny_model_dir):
    from llm_trm.phase1 import parse_config, run

    common = ["--model_name", str(tiny_model_dir), "--num_samples", "24", "--max_seq_length", "24",
              "--num_epochs", "8", "--d_compressed", "8", "--batch_size", "2", "--gradient_accumulation_steps", "2",
              "--checkpoint_every", "2", "--no_wandb", "--no_early_stopping", "--device", "cpu",
              "--cache_dir", str(tmp_path / "cache"), "--learning_rate", "1e-2"]
    ref = run(parse_config(common + ["--output_dir", str(tmp_path / "ref")]))[8]
    k = random.Random().randint(2, 20)
    out = tmp_path / "killed"
    _kill_when([sys.executable, "-m", "llm_trm.phase1", *common, "--output_dir", str(out), "--step_delay", "0.1"],
               out / "stage1a_resume.pt", lambda ck: ck["global_step"] >= k)
    assert not torch.load(out / "stage1a_resume.pt", weights_only=True)["done"]
    res = run(parse_config(common + ["--output_dir", str(out), "--resume"]))[8]
    a = torch.load(tmp_path / "ref/stage1a_resume.pt", weights_only=True)
    b = torch.load(out / "stage1a_resume.pt", weights_only=True)
    assert a["done"] and b["done"] and a["global_step"] == b["global_step"] == ref["optimizer_steps"]
    torch.testing.assert_close(b["compressor"]["compress.weight"], a["compressor"]["compress.weight"],
                               atol=1e-6, rtol=0)
    best_a = torch.load(tmp_path / "ref/stage1a_best.pt", weights_only=True)["compressor"]["compress.weight"]
    best_b = torch.load(out / "stage1a_best.pt", weights_only=True)["compressor"]["compress.weight"]
    torch.testing.assert_close(best_b, best_a, atol=1e-6, rtol=0)
    assert abs(res["heldout"]["mse"] - ref["heldout"]["mse"]) <= 1e-6


def test_phase2_kill_resume_equals_uninterrupted(tmp_path, tiny_model_dir):
    from llm_trm import phase2
    from llm_trm.compression import DimensionCompressor

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(int(torch.randint(3, 6, (1,), generator=g)), 64, generator=g) for _ in range(40)]
    torch.save({"hidden_pre": xs, "hidden_post": torch.stack([x.mean(0) for x in xs]),
                "post_token_id": torch.zeros(40, dtype=torch.long), "answer_token_id": torch.zeros(40, dtype=torch.long),
                "split": torch.tensor([0] * 32 + [1] * 8), "target_hit_rate": 1.0, "model_name": str(tiny_model_dir)},
               tmp_path / "pairs.pt")
    torch.save({"compressor": DimensionCompressor(64, 8).state_dict()}, tmp_path / "c.pt")
    common = ["--data_path", str(tmp_path / "pairs.pt"), "--compressor_checkpoint", str(tmp_path / "c.pt"),
              "--num_epochs", "6", "--batch_size", "8", "--n_heads", "2", "--n_latent_steps", "1",
              "--n_deep_recursions", "1", "--n_supervision_steps", "2", "--learning_rate", "1e-3", "--resume"]
    phase2.run(phase2.parse_config(common + ["--output_dir", str(tmp_path / "ref")]))
    k = random.Random().randint(0, 3)
    out = tmp_path / "killed"
    _kill_when([sys.executable, "-m", "llm_trm.phase2", *common, "--output_dir", str(out), "--step_delay", "0.05"],
               out / "last.pt", lambda ck: ck["epoch"] >= k)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] < 5
    phase2.run(phase2.parse_config(common + ["--output_dir", str(out)]))
    a = torch.load(tmp_path / "ref/last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 5
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], atol=1e-6, rtol=0)
    ea = torch.load(tmp_path / "ref/eval_examples.pt", weights_only=True)["trm"]["sq_err"]
    eb = torch.load(out / "eval_examples.pt", weights_only=True)["trm"]["sq_err"]
    torch.testing.assert_close(eb, ea, atol=1e-6, rtol=0)
