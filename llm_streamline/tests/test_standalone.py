"""A decoder layer run standalone equals the same layer inside the model, and is causal.

    python -m pytest tests/test_standalone.py -q
"""

import pytest
import torch
from helpers import tiny_model, tiny_opt

from llm_streamline.adapters import causal_mask_4d, get_adapter
from shared_utils.errors import UserError


def capture_layer_io(model, k, ids):
    """Input and output of layer ``k`` during an ordinary forward of the full model."""
    box = {}
    layer = get_adapter(model).layers(model)[k]

    def pre(_m, args, kwargs):
        box["in"] = (kwargs.get("hidden_states", args[0] if args else None)).detach()

    def post(_m, _a, _k, out):
        box["out"] = (out[0] if isinstance(out, tuple) else out).detach()

    h1 = layer.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = layer.register_forward_hook(post, with_kwargs=True)
    with torch.no_grad():
        model(ids, use_cache=False)
    h1.remove()
    h2.remove()
    return box["in"], box["out"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_standalone_llama_layer_equals_layer_in_model(attn):
    model = tiny_model(4, attn_implementation=attn)
    ids = torch.randint(0, 256, (2, 11))
    x, y = capture_layer_io(model, 2, ids)
    out = get_adapter(model).run_layer(model, model.model.layers[2], x)
    torch.testing.assert_close(out, y)


@torch.no_grad()
def test_standalone_opt_layer_equals_layer_in_model():
    model = tiny_opt(3)
    ids = torch.randint(0, 256, (2, 9))
    x, y = capture_layer_io(model, 1, ids)
    torch.testing.assert_close(get_adapter(model).run_layer(model, model.model.decoder.layers[1], x), y)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_standalone_layer_is_causal(attn):
    """Changing a future token leaves every earlier output unchanged (the original leaked future tokens)."""
    model = tiny_model(2, attn_implementation=attn)
    adapter = get_adapter(model)
    x = torch.randn(1, 10, 64)
    x2 = x.clone()
    x2[:, 7] += 5.0
    a = adapter.run_layer(model, model.model.layers[0], x)
    b = adapter.run_layer(model, model.model.layers[0], x2)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@torch.no_grad()
def test_unmasked_eager_layer_would_leak_the_future():
    """Guards the reason for the explicit mask: eager attention with no mask is bidirectional."""
    model = tiny_model(2, attn_implementation="eager")
    layer = model.model.layers[0]
    x = torch.randn(1, 10, 64)
    x2 = x.clone()
    x2[:, 7] += 5.0
    pos = torch.arange(10)[None]
    pe = model.model.rotary_emb(x, pos)
    a = layer(x, attention_mask=None, position_ids=pos, position_embeddings=pe)
    b = layer(x2, attention_mask=None, position_ids=pos, position_embeddings=pe)
    assert not torch.allclose(a[:, :7], b[:, :7])


def test_causal_mask_padding_and_finite():
    m = causal_mask_4d(torch.tensor([[0, 1, 1]]), 1, 3, torch.float32, "cpu")
    assert torch.isfinite(m).all()
    allowed = m[0, 0] == 0
    assert allowed.tolist() == [[False, False, False], [False, True, False], [False, True, True]]


def test_unknown_architecture_is_one_clear_error():
    from transformers import GPT2Config

    with pytest.raises(UserError, match="unsupported architecture 'gpt2'"):
        get_adapter(GPT2Config())
