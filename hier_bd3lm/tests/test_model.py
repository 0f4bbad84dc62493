"""Model-level checks: no leakage through the mask, training logits == sampling-style logits, cache exactness.

python -m pytest tests/test_model.py -q
"""

import pytest
import torch
from conftest import make_model, random_x0

from hier_bd3lm.masks import Layout, inference_mask

LAY = Layout(question_len=3, plan_len=8, exec_len=8, block_size=4)
V = 23


def noisy_logits(model, x0, xt_gen):
    return model.train_logits(x0, xt_gen)


def test_noisy_block_ignores_later_clean_and_other_noisy_blocks():
    model = make_model(LAY, V)
    x0 = random_x0(LAY, 2, V)
    q, bs = LAY.question_len, LAY.block_size
    xt = x0[:, q:].clone()
    xt[:, ::2] = model.mask_id
    base = noisy_logits(model, x0, xt)
    b = 1
    blk = slice(b * bs, (b + 1) * bs)
    x0_b = x0.clone()
    x0_b[:, q + b * bs:] = (x0_b[:, q + b * bs:] + 1) % (V - 1)  # clean tokens of blocks >= b
    xt_b = xt.clone()
    xt_b[:, :b * bs] = model.mask_id  # noisy tokens of other blocks
    xt_b[:, (b + 1) * bs:] = 0
    torch.testing.assert_close(noisy_logits(model, x0_b, xt_b)[:, blk], base[:, blk], rtol=0, atol=1e-12)
    # ... while a change in an earlier clean block does change block b
    x0_c = x0.clone()
    x0_c[:, q] = (x0_c[:, q] + 1) % (V - 1)
    assert not torch.allclose(noisy_logits(model, x0_c, xt)[:, blk], base[:, blk])


@pytest.mark.parametrize("fork", [False, True])
def test_plan_never_sees_exec_and_question_reaches_everything(fork):
    model = make_model(LAY, V, exec_sees_noisy_plan=fork)
    x0 = random_x0(LAY, 2, V)
    q, P = LAY.question_len, LAY.plan_len
    xt = x0[:, q:].clone()
    xt[:, 1::3] = model.mask_id
    base = noisy_logits(model, x0, xt)
    x0_e, xt_e = x0.clone(), xt.clone()
    x0_e[:, q + P:] = (x0_e[:, q + P:] + 5) % (V - 1)
    xt_e[:, P:] = model.mask_id
    torch.testing.assert_close(noisy_logits(model, x0_e, xt_e)[:, :P], base[:, :P], rtol=0, atol=1e-12)
    x0_q = x0.clone()
    x0_q[:, 0] = (x0_q[:, 0] + 1) % (V - 1)
    out = noisy_logits(model, x0_q, xt)
    assert not torch.allclose(out[:, :P], base[:, :P]) and not torch.allclose(out[:, P:], base[:, P:])


def test_fork_variant_exec_depends_on_noisy_plan_canonical_does_not():
    x0 = random_x0(LAY, 2, V)
    q, P = LAY.question_len, LAY.plan_len
    xt = x0[:, q:].clone()
    xt2 = xt.clone()
    xt2[:, :P] = 0  # change only the noisy plan copy
    for fork, changes in ((False, False), (True, True)):
        model = make_model(LAY, V, exec_sees_noisy_plan=fork)
        a, b = noisy_logits(model, x0, xt)[:, P:], noisy_logits(model, x0, xt2)[:, P:]
        assert (not torch.allclose(a, b)) == changes


@pytest.mark.parametrize("flat", [False, True])
def test_training_logits_equal_sampling_logits_per_block(flat):
    lay = Layout(3, 0, 12, 4) if flat else LAY
    model = make_model(lay, V)
    x0 = random_x0(lay, 2, V, seed=3)
    q, bs = lay.question_len, lay.block_size
    xt = x0[:, q:].clone()
    xt[:, 1::2] = model.mask_id
    train = noisy_logits(model, x0, xt)
    net = model.backbone
    cache = net.new_cache()
    net(x0[:, :q], torch.arange(q), torch.ones(q, q, dtype=torch.bool), cache=cache, store=True)
    for b in range(lay.n_blocks):
        s = q + b * bs
        ids = torch.cat([x0[:, :s], xt[:, b * bs:(b + 1) * bs]], 1)
        nocache = net(ids, torch.arange(s + bs), inference_mask(lay, b), out_idx=torch.arange(s, s + bs))
        cached = net(xt[:, b * bs:(b + 1) * bs], torch.arange(s, s + bs),
                     torch.ones(bs, cache.length + bs, dtype=torch.bool), cache=cache)
        torch.testing.assert_close(nocache, train[:, b * bs:(b + 1) * bs], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cached, train[:, b * bs:(b + 1) * bs], rtol=1e-9, atol=1e-9)
        net(x0[:, s:s + bs], torch.arange(s, s + bs), torch.ones(bs, cache.length + bs, dtype=torch.bool),
            cache=cache, store=True)


def test_zero_init_gives_uniform_logits():
    model = make_model(LAY, V, randomize=False, dtype=torch.float32)
    x0 = random_x0(LAY, 2, V)
    logits = model.train_logits(x0, x0[:, LAY.question_len:])
    assert torch.count_nonzero(logits) == 0
