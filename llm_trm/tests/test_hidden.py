"""Last-layer hidden states and their cache: python -m pytest tests/test_hidden.py -q"""

import pytest
import torch

from llm_trm.hidden import cached_hidden, compute_hidden, last_layer_states


def test_last_layer_is_post_norm_and_gives_logits(tiny_lm):
    ids = torch.randint(0, 256, (2, 7))
    out = tiny_lm(ids, output_hidden_states=True)
    h = last_layer_states(tiny_lm, ids)
    assert torch.allclose(out.hidden_states[-1], h, atol=1e-6)
    assert torch.allclose(tiny_lm.model(ids).last_hidden_state, h, atol=1e-6)
    assert torch.allclose(tiny_lm.lm_head(h), out.logits, atol=1e-5)


def test_cache_roundtrip_and_padding(tmp_path, tiny_lm, tiny_tok):
    texts = ["short text", "a somewhat longer text row here"]
    calls = []

    def loader():
        calls.append(1)
        return tiny_lm

    a = cached_hidden("tiny", loader, tiny_tok, texts, 64, tmp_path)
    b = cached_hidden("tiny", lambda: pytest.fail("cache miss"), tiny_tok, texts, 64, tmp_path)
    assert len(calls) == 1 and torch.equal(a["hidden"], b["hidden"])
    n0 = len(tiny_tok(texts[0]).input_ids)
    assert a["mask"][0].sum() == n0 and a["hidden"][0, n0:].abs().sum() == 0
    alone = compute_hidden(tiny_lm, tiny_tok, texts[:1], 64)
    assert torch.allclose(alone["hidden"][0, :n0], a["hidden"][0, :n0], atol=1e-5)  # right padding is harmless
