"""Slow / GPU tier: the same invariants on the embedded SmolLM2-135M-Instruct, and a CUDA training step.

    python -m pytest tests/test_real_model.py -m "slow or gpu" -q
"""

import pytest
import torch

from high_to_low.get_model import build_model, preset_bridges
from high_to_low.reasoning_datasets import generate
from high_to_low.training import make_batch, select_trainable, span_logprobs


def smol_cfg(our_method=True):
    return dict(model_name="smollm2-135m", our_method=our_method, bridges=preset_bridges("smollm2-135m", 30),
                bridge_rank=12, lora_rank=12, multiplier=100, group_size=4, full_finetune=False, seed=0)


@pytest.mark.slow
def test_smollm2_with_bridges_starts_as_the_pretrained_model():
    from shared_utils.models import load_causal_lm

    model, tok = build_model(smol_cfg())
    ids = torch.tensor([tok.encode("Question: Output the parity of this sequence.\nInput: 1 0 1 \nAnswer")])
    with torch.no_grad():
        ref = load_causal_lm("smollm2-135m")(ids).logits
        assert torch.allclose(model(ids), ref, atol=1e-4, rtol=0)
        for up in model.up:
            torch.nn.init.normal_(up.weight, 0, 0.01)
        cached = model.generate(ids, 5)
        assert torch.equal(cached, model.generate(ids, 5, use_cache=False))


@pytest.mark.gpu
def test_cuda_fp16_autocast_training_step():
    model, tok = build_model(smol_cfg())
    params = select_trainable(model, False)
    model.cuda()
    ids, mask, span = make_batch(generate("parity", 4, 0, seq_len=8), tok, 4, "cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        logits = model(ids, mask)
    _, nll, _ = span_logprobs(logits, ids, span)
    nll.sum().backward()
    assert torch.isfinite(nll).all()
    assert all(u.weight.grad is not None and u.weight.grad.abs().sum() > 0 for u in model.up)
    assert len(params) > 0
