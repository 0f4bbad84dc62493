"""The TurboConn forward rule against references: HF Llama, peft LoRA, a cache-free fixed-point reference.

    python -m pytest tests/test_model.py -q
"""

import pytest
import torch
from transformers.masking_utils import create_causal_mask

from high_to_low.get_model import LORA_SCALE, LoraLinear, TurboConnLM, add_lora, preset_bridges
from shared_utils.models import tiny_llama

T = 13


def make_lm(layers=4, lora_rank=None, seed=0):
    lm = tiny_llama(seed=seed, num_hidden_layers=layers)
    if lora_rank:
        add_lora(lm, lora_rank, 0.02)
    return lm


def randomize_bridges(model, seed=1, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    for mod in list(model.up) + list(model.down):
        with torch.no_grad():
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * scale)
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * scale)


def randomize_lora(lm, seed=2):
    g = torch.Generator().manual_seed(seed)
    for mod in lm.modules():
        if isinstance(mod, LoraLinear):
            with torch.no_grad():
                mod.lora_A.weight.copy_(torch.randn(mod.lora_A.weight.shape, generator=g))


@pytest.fixture
def ids():
    return torch.randint(3, 256, (2, T), generator=torch.Generator().manual_seed(0))


def reference_fixed_point(model, ids):
    """The rule of spec 2.2 without cache or chunks: full passes, each reading the carries of the last pass.

    Position t depends on carries from t - g only, so after ceil(T / g) passes every position is exact.
    """
    lm, g = model.lm.model, model.group_size
    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    carries = None
    for _ in range(-(-ids.shape[1] // g) + 1):
        h = lm.embed_tokens(ids)
        mask = create_causal_mask(config=model.config, inputs_embeds=h, attention_mask=None,
                                  past_key_values=None, position_ids=pos)
        pe = lm.rotary_emb(h, position_ids=pos)
        new = {}
        for i, layer in enumerate(lm.layers):
            h = layer(h, attention_mask=mask, position_embeddings=pe, position_ids=pos)
            for b, (_, d) in enumerate(model.bridges):
                if d == i and carries is not None:
                    shifted = torch.zeros_like(carries[b])
                    shifted[:, g:] = carries[b][:, :-g]  # token t reads c_{t-g}
                    add = model.up[b](model.m * shifted)
                    add[:, :g] = 0  # tokens t < g receive nothing
                    h = h + add
            for b, (s, _) in enumerate(model.bridges):
                if s == i:
                    new[b] = model.down[b](h)
        carries = new
    return lm_head_logits(model, h)


def lm_head_logits(model, h):
    return model.lm.lm_head(model.lm.model.norm(h))


def test_bridges_off_equals_llama_forward_exactly(ids):
    lm = make_lm()
    ref = lm(ids).logits
    model = TurboConnLM(lm, [], 8, 100, 4)
    assert torch.equal(model(ids, grouped=False), ref)
    assert torch.allclose(model(ids, grouped=True), ref, atol=1e-6, rtol=0)


def test_lora_matches_peft_reference(ids):
    from peft import LoraConfig, get_peft_model

    base = make_lm(seed=3)
    ours = make_lm(seed=3, lora_rank=4)
    randomize_lora(ours)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=4 * LORA_SCALE, target_modules=targets))
    ours_mods = {n: m for n, m in ours.named_modules() if isinstance(m, LoraLinear)}
    with torch.no_grad():
        for name, mod in peft_model.named_modules():
            key = name.replace("base_model.model.", "")
            if key in ours_mods and hasattr(mod, "lora_A"):
                mod.lora_A["default"].weight.copy_(ours_mods[key].lora_A.weight)
                mod.lora_B["default"].weight.copy_(ours_mods[key].lora_B.weight)
    assert torch.allclose(ours(ids).logits, peft_model(ids).logits, atol=1e-5, rtol=0)


def test_lora_and_bridges_start_as_identity(ids):
    ref = make_lm()(ids).logits
    lm = make_lm(lora_rank=4)  # A = 0: the LoRA branch adds exactly zero
    model = TurboConnLM(lm, preset_bridges("tiny", 4), 8, 100, 3)
    assert all(torch.count_nonzero(u.weight) == 0 and torch.count_nonzero(u.bias) == 0 for u in model.up)
    assert torch.allclose(model(ids), ref, atol=1e-6, rtol=0)


def test_multiplier_zero_equals_plain_lora_model(ids):
    lm = make_lm(lora_rank=4)
    randomize_lora(lm)
    ref = lm(ids).logits
    model = TurboConnLM(lm, preset_bridges("tiny", 4), 8, 0, 2)
    randomize_bridges(model)
    for up in model.up:
        torch.nn.init.zeros_(up.bias)  # U(0 * c) = bias: equality needs a zero bias (documented)
    assert torch.allclose(model(ids), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("g", [1, 3, 4, 13, 20])
def test_grouped_equals_one_pass_without_bridges(ids, g):
    lm = make_lm()
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding
    ref = lm(ids, attention_mask=mask).logits
    out = TurboConnLM(lm, [], 8, 100, g)(ids, mask, grouped=True)
    assert torch.allclose(out[mask.bool()], ref[mask.bool()], atol=1e-6, rtol=0)


@pytest.mark.parametrize("g", [1, 2, 4, 5])
def test_grouped_rule_matches_cache_free_reference(ids, g):
    model = TurboConnLM(make_lm(), preset_bridges("tiny", 4), 8, 100, g)
    randomize_bridges(model)
    with torch.no_grad():
        assert torch.allclose(model(ids), reference_fixed_point(model, ids), atol=1e-5, rtol=0)
        plain = TurboConnLM(model.lm, [], 8, 100, g)(ids, grouped=False)
        out = model(ids)
    assert torch.allclose(out[:, :g], plain[:, :g], atol=1e-6, rtol=0)  # t < g receive nothing
    assert not torch.allclose(out[:, g:], plain[:, g:], atol=1e-3)  # the bridges do act after that


@pytest.mark.parametrize("g", [1, 2, 4, 5])
@pytest.mark.parametrize("bridged", [True, False])
def test_causality(ids, g, bridged):
    model = TurboConnLM(make_lm(), preset_bridges("tiny", 4) if bridged else [], 8, 100, g)
    randomize_bridges(model)
    with torch.no_grad():
        base = model(ids)
        for t in (1, 6, T - 1):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 7) % 250 + 3
            out = model(changed)
            assert torch.equal(out[:, :t], base[:, :t])
            assert not torch.allclose(out[:, t:], base[:, t:])


def test_padding_and_rounding_do_not_change_real_tokens(ids):
    model = TurboConnLM(make_lm(), preset_bridges("tiny", 4), 8, 100, 4)
    randomize_bridges(model)
    with torch.no_grad():
        ref = model(ids[:, :10])
        padded = torch.cat([ids[:, :10], torch.zeros(2, 6, dtype=torch.long)], 1)
        mask = torch.cat([torch.ones(2, 10), torch.zeros(2, 6)], 1).long()
        assert torch.allclose(model(padded, mask)[:, :10], ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("g", [1, 3, 4])
def test_incremental_decoding_matches_grouped_logits(ids, g):
    model = TurboConnLM(make_lm(), preset_bridges("tiny", 4), 8, 100, g)
    randomize_bridges(model)
    with torch.no_grad():
        ref = model(ids)
        for step in range(1, g + 1):  # any chunking with chunks <= g is exact
            state, outs = model.new_state(), []
            for i in range(0, T, step):
                outs.append(model.forward_chunk(ids[:, i: i + step], None, state))
            assert torch.allclose(torch.cat(outs, 1), ref, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="causality"):
            model.forward_chunk(ids[:, : g + 1], None, model.new_state())


@pytest.mark.parametrize("bridged", [True, False])
def test_greedy_generation_with_cache_equals_recomputation(ids, bridged):
    model = TurboConnLM(make_lm(), preset_bridges("tiny", 4) if bridged else [], 8, 100, 3)
    randomize_bridges(model)
    cached = model.generate(ids[:, :7], 9)
    assert torch.equal(cached, model.generate(ids[:, :7], 9, use_cache=False))
    assert cached.shape == (2, 9)


def test_bridge_and_lora_gradients(ids):
    lm = make_lm(lora_rank=4)
    model = TurboConnLM(lm, preset_bridges("tiny", 4), 8, 100, 2)
    model(ids).logsumexp(-1).sum().backward()
    assert all(u.weight.grad.abs().sum() > 0 and u.bias.grad.abs().sum() > 0 for u in model.up)
    # U = 0 at init blocks the gradient to the down-projections, exactly as in the original.
    assert all(d.weight.grad.abs().sum() == 0 for d in model.down)
    loras = [m for m in lm.modules() if isinstance(m, LoraLinear)]
    assert all(m.lora_A.weight.grad.abs().sum() > 0 for m in loras)
    model.zero_grad()
    randomize_bridges(model)
    model(ids).logsumexp(-1).sum().backward()
    assert all(d.weight.grad.abs().sum() > 0 for d in model.down)
