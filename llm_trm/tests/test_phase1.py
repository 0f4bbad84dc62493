"""Phase-1 loop, CLI and checkpoints on a tiny in-process model: python -m pytest tests/test_phase1.py -q"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_trm.llm import Tracker
from llm_trm.phase1 import (
    EarlyStopping,
    Phase1Config,
    load_compressor_state,
    parse_config,
    run,
    train_compressor,
    warmup_cosine,
)
from shared_utils.errors import UserError

PROJECT = Path(__file__).resolve().parents[1]


def test_cli_defaults_equal_readme_tables():
    c = parse_config([])
    readme = dict(stage="1a", d_compressed=256, batch_size=8, num_epochs=10, learning_rate=1e-3,
                  num_samples=50000, max_seq_length=512, output_dir="./checkpoints/phase1", seed=42,
                  early_stopping=True, early_stopping_patience=3, torch_compile=True, use_wandb=True,
                  wandb_project="llm-trm-phase1", wandb_run_name=None, sweep=False,
                  sweep_d_values=[64, 128, 256, 512, 1024])
    assert {k: getattr(c, k) for k in readme} == readme
    f = parse_config(["--no_early_stopping", "--no_torch_compile", "--no_wandb", "--sweep",
                      "--sweep_d_values", "12", "24", "--stage", "1b"])
    assert (f.early_stopping, f.torch_compile, f.use_wandb, f.sweep, f.sweep_d_values, f.stage) == (
        False, False, False, True, [12, 24], "1b")


@pytest.mark.parametrize("argv", [["--stage", "2"], ["--d_compressed", "0"], ["--bogus"], ["--learning_rate", "-1"]])
def test_bad_flags_fail_with_one_line(argv):
    with pytest.raises((SystemExit, UserError)):
        parse_config(argv)


def test_early_stopping_semantics():
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert not es.step(1.0)  # first value is an improvement
    assert not es.step(0.95)  # not below best - min_delta: counter 1
    assert es.best == 1.0
    assert not es.step(0.8)  # improvement resets
    assert not es.step(0.8) and es.step(0.79)  # two non-improvements -> stop


def test_warmup_cosine_reaches_zero_at_the_last_step():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0) and max(lrs) == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


class FakeTracker(Tracker):
    def __init__(self):
        super().__init__()
        self.artifacts = []

    def artifact(self, path, name, metadata):
        self.artifacts.append((name, metadata))


def _data(n=24, L=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, L, d, generator=g) @ torch.randn(d, d, generator=g) * 0.3
    mask = torch.ones(n, L, dtype=torch.long)
    mask[::2, 4:] = 0
    h = h * mask.unsqueeze(-1)
    return {"hidden": h, "mask": mask}


def _cfg(tmp_path, **kw):
    base = dict(batch_size=4, gradient_accumulation_steps=2, num_epochs=3, log_steps=1, use_wandb=False,
                output_dir=str(tmp_path), device="cpu")
    return dataclasses.replace(Phase1Config(), **{**base, **kw})


def test_training_logs_documented_keys_and_saves_best(tmp_path):
    cfg = _cfg(tmp_path, learning_rate=1e-2)
    tr = FakeTracker()
    res = train_compressor(cfg, {"train": _data(), "heldout": _data(8, seed=1)}, 16, 4, tmp_path, tr)
    keys = set().union(*(set(m) for _, m in tr.logged))
    assert keys == {"train/loss", "train/mse", "train/relative_error", "train/cosine_similarity",
                    "train/variance_ratio", "train/learning_rate", "train/epoch", "train/global_step",
                    "epoch/loss", "epoch/cosine_similarity", "epoch/relative_error", "epoch/best_loss",
                    "eval/mse", "eval/cosine_similarity", "eval/relative_error", "eval/variance_ratio"}
    ck = torch.load(tmp_path / "stage1a_best.pt", weights_only=True)
    assert set(ck) >= {"compressor", "config", "best_loss", "best_metrics"} and isinstance(ck["config"], dict)
    assert list(ck["compressor"]) == ["compress.weight"]
    evals = [m["eval/mse"] for _, m in tr.logged if "eval/mse" in m]
    assert ck["best_loss"] == pytest.approx(min(evals)) and res["optimizer_steps"] == 3 * 3
    assert tr.artifacts and tr.artifacts[-1][0] == "compressor-stage1a-best"
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and "heldout_cosine_similarity" in rows[0]


def test_best_only_on_strict_improvement_and_patience(tmp_path):
    cfg = _cfg(tmp_path, learning_rate=0.0, num_epochs=10, early_stopping_patience=2)
    res = train_compressor(cfg, {"train": _data(), "heldout": _data(8, seed=1)}, 16, 4, tmp_path, FakeTracker())
    assert res["epochs_run"] == 3  # epoch 0 best, then 2 epochs without improvement
    assert torch.load(tmp_path / "stage1a_best.pt", weights_only=True)["epoch"] == 0  # equal loss: not saved


def test_stage1b_loads_stage1a_with_and_without_compile_prefix(tmp_path):
    cfg = _cfg(tmp_path, num_epochs=1)
    train_compressor(cfg, {"train": _data(), "heldout": _data(8, seed=1)}, 16, 4, tmp_path, FakeTracker())
    ck = torch.load(tmp_path / "stage1a_best.pt", weights_only=True)
    w = ck["compressor"]["compress.weight"]
    assert torch.equal(load_compressor_state(tmp_path / "stage1a_best.pt", 16, 4)["compress.weight"], w)
    ck["compressor"] = {"_orig_mod.compress.weight": w}
    torch.save(ck, tmp_path / "compiled.pt")
    assert torch.equal(load_compressor_state(tmp_path / "compiled.pt", 16, 4)["compress.weight"], w)
    with pytest.raises(UserError, match="expected 16->8"):
        load_compressor_state(tmp_path / "compiled.pt", 16, 8)
    with pytest.raises(UserError, match="not found"):
        train_compressor(_cfg(tmp_path / "empty", stage="1b"), {"train": _data(), "heldout": _data(8)}, 16, 4,
                         tmp_path / "empty", FakeTracker())


def test_d_larger_than_hidden_is_refused(tmp_path):
    with pytest.raises(UserError, match="larger"):
        train_compressor(_cfg(tmp_path), {"train": _data(), "heldout": _data(8)}, 16, 32, tmp_path, FakeTracker())


def test_run_sweep_and_stage1b_on_tiny_model(tmp_path, tiny_model_dir):
    common = ["--model_name", str(tiny_model_dir), "--num_samples", "24", "--max_seq_length", "48",
              "--num_epochs", "2", "--no_wandb", "--device", "cpu", "--output_dir", str(tmp_path / "ck"),
              "--cache_dir", str(tmp_path / "cache")]
    res = run(parse_config(common + ["--sweep", "--sweep_d_values", "4", "16"]))
    assert (tmp_path / "ck/d4/stage1a_best.pt").exists() and (tmp_path / "ck/d16/stage1a_best.pt").exists()
    assert res[16]["heldout"]["mse"] < res[4]["heldout"]["mse"]  # more width, less error
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # train + held-out cached once for the sweep
    res1b = run(parse_config(common + ["--stage", "1b", "--d_compressed", "16",
                                       "--output_dir", str(tmp_path / "ck/d16")]))
    assert (tmp_path / "ck/d16/stage1b_best.pt").exists() and res1b[16]["epochs_run"] == 2
    with pytest.raises(UserError, match="larger"):
        run(parse_config(common + ["--d_compressed", "65"]))


def test_original_module_path_runs_as_subprocess(tmp_path, tiny_model_dir):
    cmd = [sys.executable, "-m", "src.train.phase1_compressor", "--model_name", str(tiny_model_dir),
           "--num_samples", "12", "--max_seq_length", "32", "--num_epochs", "1", "--d_compressed", "8",
           "--no_wandb", "--device", "cpu", "--output_dir", str(tmp_path), "--cache_dir", str(tmp_path / "c")]
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "stage1a_best.pt").exists()
    bad = subprocess.run(cmd[:3] + ["--stage", "1b", "--d_compressed", "8", "--output_dir", str(tmp_path / "none"), "--model_name",
                                    str(tiny_model_dir)], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "stage 1a" in bad.stderr


def test_online_llm_forward_matches_cached_states(tmp_path, tiny_model_dir):
    common = ["--model_name", str(tiny_model_dir), "--num_samples", "20", "--max_seq_length", "40", "--num_epochs",
              "2", "--no_wandb", "--device", "cpu", "--d_compressed", "8", "--cache_dir", str(tmp_path / "cache")]
    cached = run(parse_config(common + ["--output_dir", str(tmp_path / "a")]))[8]
    online = run(parse_config(common + ["--output_dir", str(tmp_path / "b"), "--online"]))[8]
    assert online["heldout"]["mse"] == pytest.approx(cached["heldout"]["mse"], rel=1e-4)
    assert online["optimizer_steps"] == cached["optimizer_steps"]
