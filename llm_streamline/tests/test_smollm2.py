"""The embedded SmolLM2-135M-Instruct (slow: real 135M model).  python -m pytest tests/test_smollm2.py -m slow -q"""

import math

import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_prunes_to_22_layers_with_finite_ppl():
    from llm_streamline.adapters import get_adapter
    from llm_streamline.evaluate import perplexity, ppl_blocks
    from llm_streamline.surgery import count_params, streamline_model
    from shared_utils.models import load_causal_lm, load_tokenizer

    model = load_causal_lm("smollm2-135m")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert count_params(model) == 134_515_008
    pruned = streamline_model(model, best=10, n=8)
    assert len(get_adapter(pruned).layers(pruned)) == 22
    assert count_params(pruned) == 134_515_008 - 8 * 3_540_096
    blocks = ppl_blocks(load_tokenizer("smollm2-135m"), "embedded", 64, 2)
    ppl = perplexity(pruned, blocks)
    assert math.isfinite(ppl) and ppl > perplexity(model, blocks)
    assert torch.isfinite(pruned(blocks[:1]).logits).all()
