"""Training: resume == uninterrupted, checkpoint round trip (logits + EMA), NaN guard, loss drops, CLI modes.

python -m pytest tests/test_train.py -q
"""

import json
import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES, PROJECT

from hier_bd3lm.config import parse_overrides
from hier_bd3lm.diffusion import BlockDiffusion
from hier_bd3lm.evaluate import load_checkpoint
from hier_bd3lm.train import checkpoint_path, train
from shared_utils.errors import NonFiniteLossError, UserError

BASE = ["model=micro", "data.tokenizer=char", f"data.train_path={FIXTURES / 'hier_gsm8k_train.json'}",
        f"data.test_path={FIXTURES / 'hier_gsm8k_test.json'}", "training.hierarchical.question_len=32",
        "training.hierarchical.plan_len=32", "training.hierarchical.exec_len=64", "training.hierarchical.total_len=128",
        "block_size=8", "loader.batch_size=4", "loader.eval_batch_size=6", "trainer.log_every_n_steps=1",
        "lr_scheduler.num_warmup_steps=2", "model.dropout=0.1", "trainer.device=cpu"]


def cfg_for(tmp, *extra):
    return parse_overrides(BASE + [f"checkpointing.save_dir={tmp}", *extra])


@pytest.mark.parametrize("algo", ["bd3lm", "ar"])
def test_resume_equals_uninterrupted(tmp_path, algo):
    full = train(cfg_for(tmp_path / "a", "trainer.max_steps=6", "trainer.val_check_interval=3", f"algo={algo}"))
    train(cfg_for(tmp_path / "b", "trainer.max_steps=3", "trainer.val_check_interval=3", f"algo={algo}"))
    resumed = train(cfg_for(tmp_path / "b", "trainer.max_steps=6", "trainer.val_check_interval=3", f"algo={algo}"))
    a = torch.load(full["checkpoint"], weights_only=False)
    b = torch.load(resumed["checkpoint"], weights_only=False)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"]):
        assert torch.equal(x, y)
    assert full["nll"] == resumed["nll"]


def test_checkpoint_round_trip_reproduces_logits_and_ema(tmp_path):
    cfg = cfg_for(tmp_path, "trainer.max_steps=2", "trainer.val_check_interval=2")
    train(cfg)
    model, tok, saved_cfg, state = load_checkpoint(checkpoint_path(cfg))
    assert saved_cfg.block_size == 8 and tok.mask_id == tok.vocab_size - 1 and tok.pad_id != tok.mask_id
    for p, s in zip(model.backbone.parameters(), state["ema"]["shadow"]):
        assert torch.equal(p, s)
    model2, *_ = load_checkpoint(checkpoint_path(cfg))
    x0 = torch.randint(0, tok.vocab_size - 1, (2, 128))
    xt = x0[:, 32:].clone()
    xt[:, ::2] = tok.mask_id
    torch.testing.assert_close(model.train_logits(x0, xt), model2.train_logits(x0, xt), rtol=0, atol=0)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path, "trainer.max_steps=2", "trainer.val_check_interval=2")
    train(cfg)
    before = checkpoint_path(cfg).read_bytes()
    monkeypatch.setattr(BlockDiffusion, "loss", lambda self, *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 3"):
        train(cfg_for(tmp_path, "trainer.max_steps=4", "trainer.val_check_interval=2"))
    assert checkpoint_path(cfg).read_bytes() == before


def test_loss_drops_when_overfitting(tmp_path):
    cfg = cfg_for(tmp_path, "trainer.max_steps=80", "trainer.val_check_interval=80", "optim.lr=3e-3",
                  "training.hierarchical.question_len=16", "training.hierarchical.plan_len=16",
                  "training.hierarchical.exec_len=32", "training.hierarchical.total_len=64",
                  "data.limit_train=8", "data.valid_fraction=0.01", "model.dropout=0.0", "trainer.log_every_n_steps=5")
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert all(v == v for v in losses)
    first, last = losses[0], sum(losses[-3:]) / 3
    assert last < 0.6 * first, (first, last)


def test_main_train_ppl_and_sample_eval(tmp_path):
    args = BASE + [f"checkpointing.save_dir={tmp_path}", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    r = subprocess.run([sys.executable, "main.py", "mode=train", *args], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    r = subprocess.run([sys.executable, "main.py", "mode=ppl_eval", f"eval.checkpoint_path={ckpt}", "eval.mc_samples=1",
                        "loader.eval_batch_size=3", f"data.test_path={FIXTURES / 'hier_gsm8k_test.json'}"],
                       cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bound"] and out["nll_per_content_token"] > 0 and out["exec_nll_per_token"] > 0
    r = subprocess.run([sys.executable, "main.py", "mode=sample_eval", f"eval.checkpoint_path={ckpt}",
                        "loader.eval_batch_size=2", "sampling.num_sample_batches=1", "sampling.kv_cache=true",
                        f"eval.output_path={tmp_path / 'samples.json'}"], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "samples.json").read_text())
    assert out["n"] == 2 and out["nfe_per_sample"] == 96 and len(out["samples"]) == 2


def test_from_pretrained_loads_weights_and_tokenizer(tmp_path):
    cfg = cfg_for(tmp_path / "a", "trainer.max_steps=2", "trainer.val_check_interval=2")
    train(cfg)
    ckpt = checkpoint_path(cfg)
    out = train(cfg_for(tmp_path / "b", "trainer.max_steps=1", f"training.from_pretrained={ckpt}"))
    assert out["step"] == 1
    with pytest.raises(Exception, match="does not exist"):
        train(cfg_for(tmp_path / "c", "trainer.max_steps=1", f"training.from_pretrained={tmp_path}/none.ckpt"))


@pytest.mark.parametrize("change,keys", [
    (["training.hierarchical.question_len=16", "training.hierarchical.total_len=112"], "training.hierarchical.question_len"),
    (["data.tokenizer=smollm2-135m"], "data.tokenizer"),
    (["algo=ar"], "algo.name"),
    (["model.hidden_size=64"], "model.hidden_size"),
])
def test_resume_with_another_config_is_refused(tmp_path, change, keys):
    train(cfg_for(tmp_path, "trainer.max_steps=1", "trainer.val_check_interval=1"))
    with pytest.raises(UserError, match=keys.replace(".", r"\.")):
        train(cfg_for(tmp_path, "trainer.max_steps=2", *change))


def test_corrupt_checkpoint_and_output_under_a_file_are_one_line(tmp_path):
    cfg = cfg_for(tmp_path / "run", "trainer.max_steps=1", "trainer.val_check_interval=1")
    train(cfg)
    ckpt = checkpoint_path(cfg)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    with pytest.raises(UserError, match="corrupt or truncated"):
        train(cfg_for(tmp_path / "run", "trainer.max_steps=2"))
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(ckpt)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        train(cfg_for(tmp_path / "afile" / "run", "trainer.max_steps=1"))
