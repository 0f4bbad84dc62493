"""(slow) The embedded SmolLM2-135M-Instruct: expected config, exact LoRA count, one exact merge keeps its logits.

    python -m pytest tests/test_smollm2_slow.py -q -m slow
"""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_exact_merge_preserves_logits():
    from superrelora.config import load_config
    from superrelora.merge import lora_layers, partial_merge
    from superrelora.model import build_model, load_base_model, trainable_parameters

    base = load_base_model("smollm2-135m")
    c = base.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size) == (30, 576, 1536, 49152)
    torch.manual_seed(0)
    model = build_model(load_config(None, {"model_name": "smollm2-135m"}), base).eval()
    assert trainable_parameters(model) == 2_442_240
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B["default"].weight.normal_(0, 0.01)
        ids = torch.randint(3, 49152, (2, 16))
        before = model(input_ids=ids).logits
        partial_merge(model, 0.1)
        after = model(input_ids=ids).logits
    assert ((after - before).abs().max() / before.abs().max()) < 1e-4
