"""Sampler: KV cache == no cache (same tokens), exact lengths, prefix untouched, NFEs, modes, nucleus.

python -m pytest tests/test_sampling.py -q
"""

import pytest
import torch
from conftest import make_model, random_x0

from hier_bd3lm.masks import Layout
from hier_bd3lm.sampling import Sampler, nucleus

LAY = Layout(question_len=3, plan_len=8, exec_len=8, block_size=4)
V = 23


def prefix(layout, model, batch=2, keep_plan=False):
    x = random_x0(layout, batch, V, seed=5)
    start = layout.question_len + (layout.plan_len if keep_plan else 0)
    x[:, start:] = model.mask_id
    return x


@pytest.mark.parametrize("algo,sampler,T,p", [("bd3lm", "first_hitting", 0, 1.0), ("bd3lm", "first_hitting", 0, 0.8),
                                              ("bd3lm", "ddpm_cache", 3, 1.0), ("ar", "first_hitting", 0, 0.9)])
def test_kv_cache_gives_same_tokens_as_no_cache(algo, sampler, T, p):
    model = make_model(LAY, V, algo=algo)
    x = prefix(LAY, model)
    outs = []
    for cache in (True, False):
        g = torch.Generator().manual_seed(11)
        out, stats = Sampler(model, p, cache, sampler, T).sample(x, "full", g)
        outs.append((out, stats["nfe"]))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]


@pytest.mark.parametrize("algo", ["bd3lm", "ar"])
def test_output_shape_prefix_untouched_no_mask_left(algo):
    model = make_model(LAY, V, algo=algo)
    x = prefix(LAY, model)
    out, stats = Sampler(model).sample(x, "full", torch.Generator().manual_seed(0))
    q = LAY.question_len
    assert out.shape == x.shape and torch.equal(out[:, :q], x[:, :q])
    assert (out != model.mask_id).all() and (out >= 0).all() and (out < V).all()
    assert stats["nfe"] == LAY.gen_len  # first-hitting: one NFE per generated token (cache-store passes excluded)


def test_plan_only_and_exec_only_leave_the_other_segment():
    model = make_model(LAY, V)
    q, P = LAY.question_len, LAY.plan_len
    x = prefix(LAY, model, keep_plan=True)
    out, stats = Sampler(model).sample(x, "exec_only", torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :q + P], x[:, :q + P]) and (out[:, q + P:] != model.mask_id).all()
    assert stats["nfe"] == LAY.exec_len
    x = prefix(LAY, model)
    out, stats = Sampler(model).sample(x, "plan_only", torch.Generator().manual_seed(0))
    assert (out[:, q:q + P] != model.mask_id).all() and (out[:, q + P:] == model.mask_id).all()
    assert stats["nfe"] == P


def test_ddpm_cache_sampler_skips_model_calls_when_nothing_changed():
    model = make_model(LAY, V)
    x = prefix(LAY, model, batch=1)
    _, stats = Sampler(model, sampler="ddpm_cache", T=12).sample(x, "full", torch.Generator().manual_seed(0))
    assert LAY.n_blocks <= stats["nfe"] < LAY.n_blocks * 12


def test_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.equal(nucleus(probs, 1.0), probs)
    assert torch.equal(nucleus(probs, 0.01), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(nucleus(probs, 0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
