"""The fast grouped forward (fast_grouped.py) equals the reference chunk loop: logits, gradients, generation.

    python -m pytest tests/test_fast.py -q
"""

import pytest
import torch

from high_to_low.get_model import TurboConnLM, add_lora, preset_bridges
from shared_utils.models import tiny_llama


def make(g, layers=6, lora=None, kv=2, bridges=None):
    lm = tiny_llama(seed=0, num_hidden_layers=layers, num_key_value_heads=kv)
    if lora:
        add_lora(lm, lora, 0.02)
    model = TurboConnLM(lm, preset_bridges("tiny", layers) if bridges is None else bridges, 8, 100, g)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in list(model.up) + list(model.down):
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.05)
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.05)
        for name, p in lm.named_parameters():
            if "lora_A" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    return model


def logits_and_grads(model, ids, mask, fast):
    model.fast = fast
    model.zero_grad(set_to_none=True)
    logits = model(ids, mask)
    sel = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    logits[sel].float().logsumexp(-1).sum().backward()
    return logits.detach()[sel], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("g,lora,kv,pad,layers", [
    (4, None, 4, False, 6), (3, 4, 2, True, 6), (1, None, 1, False, 6), (5, 4, 4, False, 6), (2, None, 2, True, 4),
    (13, None, 2, False, 6), (20, None, 2, False, 6)])
def test_fast_equals_reference_logits_and_grads(g, lora, kv, pad, layers):
    model = make(g, layers=layers, lora=lora, kv=kv)
    ids = torch.randint(3, 200, (2, 13), generator=torch.Generator().manual_seed(0))
    mask = None
    if pad:
        mask = torch.ones_like(ids)
        mask[1, 9:] = 0
    a, ga = logits_and_grads(model, ids, mask, True)
    b, gb = logits_and_grads(model, ids, mask, False)
    torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
    assert set(ga) == set(gb) and len(ga) > 0
    for name in gb:
        torch.testing.assert_close(ga[name], gb[name], atol=2e-6, rtol=1e-5, msg=name)


def test_fast_without_bridges_grouped_equals_one_pass():
    model = make(3, bridges=[])
    ids = torch.randint(3, 200, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, grouped=True), model(ids, grouped=False), atol=2e-6, rtol=1e-5)


def test_fast_is_used_and_can_fail():
    """A bridge that is wrongly delayed must be caught by the comparison above (the test can fail)."""
    model = make(4)
    ids = torch.randint(3, 200, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids)
        model.group_size = 3  # the fast path now delays by 3: logits must differ from the g = 4 reference
        assert not torch.allclose(model(ids), ref, atol=1e-4)


@pytest.mark.parametrize("g,prompt_len", [(4, 10), (3, 9), (1, 5)])
def test_fast_prefill_generation_equals_reference(g, prompt_len):
    model = make(g)
    with torch.no_grad():
        for mod in model.up:
            mod.weight.mul_(20)  # strong bridges, so a wrong carry would change the greedy tokens
    ids = torch.randint(3, 200, (3, prompt_len), generator=torch.Generator().manual_seed(0))
    model.fast = True
    fast = model.generate(ids, 7)
    model.fast = False
    ref = model.generate(ids, 7)
    uncached = model.generate(ids, 7, use_cache=False)
    assert torch.equal(fast, ref) and torch.equal(ref, uncached)
