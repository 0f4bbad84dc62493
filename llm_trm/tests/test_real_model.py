"""Real embedded SmolLM2-135M checks (slow tier): python -m pytest tests/test_real_model.py -m slow -q"""

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from shared_utils.models import find_smollm2_gguf, load_causal_lm, load_tokenizer

    try:
        find_smollm2_gguf()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"embedded SmolLM2 not installed: {exc}")
    return load_causal_lm("smollm2-135m").eval(), load_tokenizer("smollm2-135m")


def test_real_last_layer_and_think_span(smol):
    from llm_trm.data import make_problems, think_token_span, thinking_text
    from llm_trm.hidden import last_layer_states

    model, tok = smol
    assert model.config.hidden_size == 576
    p = make_problems(1, seed=0, max_value=9)[0]
    text, pc = thinking_text(tok, p)
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    s, e = think_token_span([tuple(o) for o in enc.offset_mapping], text, pc)
    assert tok.decode(enc.input_ids[s: e + 1]).strip().startswith("<")
    assert tok.decode(enc.input_ids[s: e + 1]).rstrip().endswith("</think>")
    assert tok.decode(enc.input_ids[e + 1]) == str(p.answer)[0]  # the token after the span is the answer's
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    h = last_layer_states(model, ids)
    assert torch.allclose(out.hidden_states[-1], h, atol=1e-4)
    assert torch.allclose(model.lm_head(h), out.logits, atol=1e-3)
