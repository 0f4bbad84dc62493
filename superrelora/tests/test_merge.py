"""The partial merge on peft LoRA layers: function preservation, formulas, optimizer moments, rank growth.

    python -m pytest tests/test_merge.py -q
"""

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from superrelora.config import LLAMA_TARGETS
from superrelora.merge import lora_layers, magnitude_prune_, merge_and_reinit, partial_merge, should_merge
from superrelora.model import SuperReLoRaModel


def peft_model(base, r=4, alpha=8, dtype=torch.float64, seed=1):
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=LLAMA_TARGETS, lora_dropout=0.0))
    model = model.to(dtype)
    with torch.no_grad():  # a trained-looking adapter: B != 0
        for _, layer in lora_layers(model):
            layer.lora_B["default"].weight.normal_(0, 0.05)
    return model


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_wrapped_model_equals_base_at_init(tiny_base, batch):
    ref = logits(tiny_base, batch)
    wrapped = SuperReLoRaModel(tiny_base, r=4, alpha=8, target_modules=LLAMA_TARGETS)
    assert torch.equal(logits(wrapped, batch), ref)  # B = 0 at init: exactly the base model
    assert len(wrapped.replaced_modules) == 2 * 7


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_exact_merge_keeps_logits_float64(tiny_base, batch, alpha):
    model = peft_model(tiny_base)
    before = logits(model, batch)
    layers = lora_layers(model)
    w0 = {n: lay.get_base_layer().weight.clone() for n, lay in layers}
    d0 = {n: lay.get_delta_weight("default").clone() for n, lay in layers}
    norm = partial_merge(model, alpha, split="sqrt")
    assert (logits(model, batch) - before).abs().max() < 1e-10
    for n, lay in layers:  # W' = W + alpha * s * B A ; product scaled by (1 - alpha)
        assert torch.allclose(lay.get_base_layer().weight, w0[n] + alpha * d0[n], atol=1e-12)
        assert torch.allclose(lay.get_delta_weight("default"), (1 - alpha) * d0[n], atol=1e-12)
    assert norm == pytest.approx(sum(float(d.detach().norm()) for d in d0.values()), rel=1e-9)


def test_exact_merge_float32_relative_error_small(tiny_base, batch):
    model = peft_model(tiny_base, dtype=torch.float32)
    before = logits(model, batch)
    partial_merge(model, 0.1)
    rel = (logits(model, batch) - before).abs().max() / before.abs().max()
    assert rel < 1e-5


def test_b_only_split_and_reference_shrink(tiny_base):
    model = peft_model(tiny_base)
    (_, layer), *_ = lora_layers(model)
    a0, d0 = layer.lora_A["default"].weight.clone(), layer.get_delta_weight("default").clone()
    w0 = layer.get_base_layer().weight.clone()
    partial_merge(model, 0.1, split="reference", moments="reference")
    # the original formula: effective update becomes (1 - a + a^2) of the old one (loses a(1-a) = 9 %)
    eff = layer.get_base_layer().weight + layer.get_delta_weight("default") - w0
    assert torch.allclose(eff, (1 - 0.1 + 0.01) * d0, atol=1e-12)
    assert torch.allclose(layer.lora_A["default"].weight, 0.9 * a0)


def test_merge_all_leaves_trainable_adapter(tiny_base, batch):
    wrapped = SuperReLoRaModel(tiny_base, r=4, alpha=8, target_modules=LLAMA_TARGETS)
    with torch.no_grad():
        for _, layer in lora_layers(wrapped.model):
            layer.lora_B["default"].weight.normal_(0, 0.05)
    before = logits(wrapped, batch)
    wrapped.merge_all(1.0)
    for _, layer in lora_layers(wrapped.model):
        assert layer.lora_B["default"].weight.abs().max() == 0 and layer.lora_A["default"].weight.abs().max() > 0
    assert torch.allclose(logits(wrapped, batch), before, atol=1e-5)
    out = wrapped(**batch, labels=batch["input_ids"])
    out.loss.backward()
    grads = [lay.lora_B["default"].weight.grad for _, lay in lora_layers(wrapped.model)]
    assert all(g is not None and g.abs().max() > 0 for g in grads)  # the original's alpha=1 killed both factors


def _adam_state(model, scale=1.0):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        opt.state[p] = {"step": torch.tensor(5.0), "exp_avg": torch.full_like(p, 2.0 * scale),
                        "exp_avg_sq": torch.full_like(p, 4.0 * scale)}
    return opt


@pytest.mark.parametrize("mode", ["consistent", "reference", "keep", "reset", "prune:0.5"])
def test_optimizer_moments_adjusted_in_place(tiny_base, mode):
    model = peft_model(tiny_base)
    opt = _adam_state(model)
    (_, layer), *_ = lora_layers(model)
    pa, pb = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    with torch.no_grad():  # distinct magnitudes so pruning has no ties
        opt.state[pa]["exp_avg"].copy_(torch.arange(pa.numel(), dtype=pa.dtype).view_as(pa) + 1)
    ids = {id(opt.state[p][k]) for p in (pa, pb) for k in ("exp_avg", "exp_avg_sq")}
    m_a = opt.state[pa]["exp_avg"].clone()
    partial_merge(model, 0.19, split="sqrt", moments=mode, optimizer=opt)
    assert {id(opt.state[p][k]) for p in (pa, pb) for k in ("exp_avg", "exp_avg_sq")} == ids  # same tensors
    assert float(opt.state[pa]["step"]) == 5.0
    c = math.sqrt(0.81)
    got_m, got_v = opt.state[pa]["exp_avg"], opt.state[pb]["exp_avg_sq"]
    if mode == "consistent":
        assert torch.allclose(got_m, m_a * c) and torch.allclose(got_v, torch.full_like(got_v, 4.0 * c * c))
    elif mode == "reference":
        assert torch.allclose(got_m, m_a * 0.81) and torch.allclose(got_v, torch.full_like(got_v, 4.0 * 0.81))
    elif mode == "keep":
        assert torch.equal(got_m, m_a)
    elif mode == "reset":
        assert got_m.abs().max() == 0 and got_v.abs().max() == 0
    else:
        assert int((got_m == 0).sum()) == round(0.5 * got_m.numel())
        assert got_m[got_m != 0].min() > m_a.median() - 1  # the small half went


def test_magnitude_prune_exact_count_with_ties():
    t = torch.ones(10)
    magnitude_prune_(t, 0.3)
    assert int((t == 0).sum()) == 3  # ties must not prune the whole tensor


def test_relora_merge_and_reinit_keeps_function_and_resets(tiny_base, batch):
    model = peft_model(tiny_base)
    opt = _adam_state(model)
    before = logits(model, batch)
    merge_and_reinit(model, opt, prune=0.9)
    assert (logits(model, batch) - before).abs().max() < 1e-10  # B = 0 after reinit, all moved to the base
    for _, lay in lora_layers(model):
        assert lay.lora_B["default"].weight.abs().max() == 0


def test_should_merge_schedule():
    assert [s for s in range(0, 13) if should_merge(s, 4)] == [4, 8, 12]
    assert not any(should_merge(s, 0) for s in range(10))


def test_rank_grows_with_fresh_factors_between_merges(tiny_base):
    from superrelora.ranks import spectrum_stats

    model = peft_model(tiny_base, r=2)
    (_, layer), *_ = lora_layers(model)
    w0 = layer.get_base_layer().weight.clone()
    k = 3
    for i in range(k + 1):  # fresh factors before each of the k merges and after the last one
        with torch.no_grad():
            torch.manual_seed(10 + i)
            layer.lora_A["default"].weight.normal_()
            layer.lora_B["default"].weight.normal_()
        if i < k:
            partial_merge(model, 0.5)
    delta = layer.get_base_layer().weight + layer.get_delta_weight("default") - w0
    m, n = delta.shape
    assert spectrum_stats(delta)["numerical_rank"] == min(2 * (k + 1), m, n)


@pytest.mark.parametrize("split", ["sqrt", "reference"])
def test_full_merge_with_a_zeroing_split_is_refused_like_the_config(tiny_base, split):
    """step_partial_merge(.., 1.0) with sqrt would zero A and B (dead adapter): refused, nothing modified."""
    from shared_utils.errors import UserError
    from superrelora.config import load_config

    wrapped = SuperReLoRaModel(tiny_base, r=4, alpha=8, target_modules=LLAMA_TARGETS)
    with torch.no_grad():
        for _, layer in lora_layers(wrapped.model):
            layer.lora_B["default"].weight.normal_(0, 0.05)
    before = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    wrapped.split = split
    with pytest.raises(UserError, match="b_only") as api:
        wrapped.step_partial_merge(4, 2, 1.0)
    with pytest.raises(UserError, match="b_only") as cfg:
        load_config(None, {"merge_alpha": 1.0, "merge_split": split})
    assert str(api.value) == str(cfg.value)  # the same rule, the same message
    assert all(torch.equal(p, before[n]) for n, p in wrapped.named_parameters())
    assert wrapped.step_partial_merge(3, 2, 1.0) == 0.0  # not a merge step: nothing to refuse
    assert wrapped.merge_all(1.0) > 0  # b_only: the full merge that keeps training
