"""Training paths: Trainer == manual loop, merge schedule (with grad accumulation), frozen base, rank growth, NaN.

    python -m pytest tests/test_train.py -q
"""

import pytest
import torch

from superrelora.merge import lora_layers
from superrelora.ranks import rank_report
from superrelora.train import run_training


def _run(cfg):
    summary = run_training(cfg, export=False, evaluate=False)
    setup = summary.pop("_setup")
    return summary, setup


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("ga", [1, 2])
def test_trainer_equals_manual_loop(tiny_cfg, tmp_path, ga):
    manual, ms = _run(tiny_cfg(output_dir=str(tmp_path / "m"), gradient_accumulation_steps=ga, batch_size=4 // ga))
    trainer, ts = _run(tiny_cfg(output_dir=str(tmp_path / "t"), gradient_accumulation_steps=ga, batch_size=4 // ga,
                                use_trainer=True))
    lm = [r["loss"] for r in ms.history]
    lt = [r["loss"] for r in ts.history]
    assert len(lm) == len(lt) == 6
    assert torch.allclose(torch.tensor(lm), torch.tensor(lt), rtol=1e-5, atol=1e-6)
    wm, wt = _weights(ms.model), _weights(ts.model)
    assert wm.keys() == wt.keys()
    for n in wm:
        assert torch.allclose(wm[n], wt[n], rtol=1e-5, atol=1e-7), n
    # same merge schedule, counted in optimizer updates (not micro-batches)
    assert manual["merge_steps"] == trainer["merge_steps"] == [2, 4, 6]


def test_only_adapters_train_and_base_moves_only_by_merges(tiny_cfg, tiny_base):
    cfg = tiny_cfg(merge_every=0, method="lora")
    _, setup = _run(cfg)
    model = setup.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = model.get_base_model()
    after = dict(base.named_parameters())
    fresh = {n.replace(".base_layer", ""): p for n, p in after.items() if "lora_" not in n}
    from shared_utils.runs import seed_everything
    from superrelora.model import load_base_model

    seed_everything(cfg.seed)
    ref = dict(load_base_model(cfg.model_name).named_parameters())
    assert all(torch.equal(fresh[n], ref[n]) for n in ref)  # LoRA without merges: base untouched
    assert any(lay.lora_B["default"].weight.abs().max() > 0 for _, lay in lora_layers(model))


def test_merges_change_only_targeted_base_weights(tiny_cfg):
    cfg = tiny_cfg(merge_every=2)
    from shared_utils.runs import seed_everything
    from superrelora.model import load_base_model

    _, setup = _run(cfg)
    seed_everything(cfg.seed)
    ref = dict(load_base_model(cfg.model_name).named_parameters())
    now = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
           for n, p in setup.model.named_parameters() if "lora_" not in n}
    changed = {n for n in ref if not torch.equal(now[n], ref[n])}
    assert changed and all(any(t in n for t in cfg.target_modules) for n in changed)
    assert not any("embed" in n or "norm" in n or "lm_head" in n for n in changed)


def test_rank_of_update_exceeds_r_after_merges(tiny_cfg):
    from shared_utils.runs import seed_everything
    from superrelora.model import load_base_model

    out = {}
    for method, every in (("superrelora", 2), ("lora", 0)):
        cfg = tiny_cfg(method=method, merge_every=every, merge_alpha=0.5, lora_r=2, max_steps=8)
        _, setup = _run(cfg)
        seed_everything(cfg.seed)
        out[method] = rank_report(setup.model, load_base_model(cfg.model_name))["summary"]["numerical_rank"]
    assert out["lora"] <= 2 < out["superrelora"]


def test_relora_and_full_and_as_run_paths(tiny_cfg, tmp_path):
    relora, rs = _run(tiny_cfg(method="relora", output_dir=str(tmp_path / "r"), **{"scheduler.type": "jagged_cosine"}))
    assert relora["merges"] == 3
    lrs = [r["learning_rate"] for r in rs.history]
    assert lrs[2] < lrs[1]  # re-warmup right after the merge at update 2 (jagged cosine)
    full, fs = _run(tiny_cfg(method="full", output_dir=str(tmp_path / "f")))
    assert full["trainable_params"] == full["total_params"] and full["merges"] == 0
    as_run, a = _run(tiny_cfg(method="as_run", merge_every=0, output_dir=str(tmp_path / "a")))
    assert as_run["trainable_params"] == as_run["total_params"] > full["total_params"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path):
    from shared_utils.errors import NonFiniteLossError

    cfg = tiny_cfg(learning_rate=1e30, max_steps=6, merge_every=0, method="full", save_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at update \d+; last good checkpoint: .*checkpoint-\d+") as exc:
        _run(cfg)
    step = int(str(exc.value).split("update ")[1].split(";")[0])
    assert (tmp_path / "run" / f"checkpoint-{step - 1}" / "state.json").is_file()
    assert not (tmp_path / "run" / f"checkpoint-{step}").exists()


def test_schedules_match_transformers_and_clamp_past_horizon():
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    from superrelora.train import schedule_lambda

    p = [torch.nn.Parameter(torch.zeros(1))]
    for kind, ref_fn in (("linear", get_linear_schedule_with_warmup), ("cosine", get_cosine_schedule_with_warmup)):
        ref = ref_fn(torch.optim.SGD(p, lr=1.0), 3, 20)
        mine = schedule_lambda(kind, 20, 3)
        for step in range(21):
            assert abs(ref.lr_lambdas[0](step) - mine(step)) < 1e-12
        assert mine(25) == mine(20) == 0.0  # stays at the end value (HF's cosine would climb back)
