"""Objective: schedules, t sampling, masking, NELBO vs a direct per-block computation, initial loss, L'=1.

python -m pytest tests/test_diffusion.py -q
"""

import math

import pytest
import torch
from conftest import make_model, random_x0

from hier_bd3lm.masks import Layout, inference_mask
from hier_bd3lm.noise import SCHEDULES, Noise

LAY = Layout(question_len=3, plan_len=8, exec_len=8, block_size=4)
V = 23


def test_loglinear_schedule():
    t = torch.tensor([0.1, 0.5, 1.0])
    scale, move = Noise("loglinear")(t)
    torch.testing.assert_close(move, t)
    torch.testing.assert_close(scale, -1 / t)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedules_move_chance_in_range_and_scaling_negative(kind):
    t = torch.linspace(0.01, 1.0, 50, dtype=torch.float64)
    scale, move = Noise(kind)(t)
    assert (move > 0).all() and (move <= 1 + 1e-9).all() and (scale < 0).all()
    if kind != "loglinear":  # scaling = alpha'/(1-alpha) = -d(move)/dt / move (up to the eps clamp)
        h = 1e-6
        dmove = (Noise(kind)(t + h)[1] - Noise(kind)(t - h)[1]) / (2 * h)
        denom = move + 1e-3 if kind == "cosine" else move  # bd3lms' cosine adds eps to the denominator
        ok = move > 2e-3
        torch.testing.assert_close(scale[ok], (-dmove / denom)[ok], rtol=2e-2, atol=1e-3)


def test_clipped_t_in_interval_and_antithetic_strata():
    model = make_model(LAY, V)
    g = torch.Generator().manual_seed(0)
    t = model.sample_t(8, 0.3, 0.8, g)
    assert t.shape == (8, LAY.n_blocks) and (t >= 0.3).all() and (t <= 0.8).all()
    u = ((model.sample_t(8, 0.0, 1.0, g)).flatten())
    n = u.numel()
    strata = torch.floor(u * n).long()
    assert torch.equal(strata, torch.arange(n))


def test_resample_keeps_block_mask_rate_in_interval():
    model = make_model(LAY, V, eps_min=0.25, eps_max=0.75, resample=True)
    x = random_x0(LAY, 16, V)[:, LAY.question_len:]
    g = torch.Generator().manual_seed(1)
    t = model.sample_t(16, 0.25, 0.75, g).repeat_interleave(LAY.block_size, 1)
    _, masked = model.q_xt(x, t, g)
    frac = masked.view(16, -1, LAY.block_size).float().mean(-1)
    assert (frac >= 0.25).all() and (frac <= 0.75).all()


def test_nelbo_matches_direct_per_block_computation():
    """Replay the same t and mask draws, score each block with the sampling-style pass, compare."""
    model = make_model(LAY, V)
    x0 = random_x0(LAY, 3, V, seed=2)
    lm = torch.ones_like(x0)
    lm[:, :LAY.question_len] = 0
    lm[0, -3:] = 0  # padding-like positions without loss weight
    got = model.loss(x0, lm, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    q, bs, B = LAY.question_len, LAY.block_size, x0.shape[0]
    t = model.sample_t(B, 1e-3, 1.0, g).repeat_interleave(bs, 1)
    u = torch.rand(x0[:, q:].shape, generator=g)
    xt = torch.where(u < t, model.mask_id, x0[:, q:])
    total = torch.zeros((), dtype=torch.float64)
    for b in range(LAY.n_blocks):
        s = q + b * bs
        ids = torch.cat([x0[:, :s], xt[:, b * bs:(b + 1) * bs]], 1)
        logits = model.backbone(ids, torch.arange(s + bs), inference_mask(LAY, b), out_idx=torch.arange(s, s + bs))
        logits[..., model.mask_id] = -float("inf")
        logp = logits.log_softmax(-1)
        for r in range(B):
            for j in range(bs):
                pos = b * bs + j
                if xt[r, pos] == model.mask_id and lm[r, q + pos]:
                    total += -logp[r, j, x0[r, q + pos]] / t[r, pos]
    torch.testing.assert_close(got, total / lm.sum(), rtol=1e-6, atol=1e-9)  # 1/t is formed in fp32


def test_unmasked_positions_have_zero_loss():
    model = make_model(LAY, V)
    x0 = random_x0(LAY, 4, V)
    g = torch.Generator().manual_seed(3)
    tok = model.token_losses(x0, g)
    g = torch.Generator().manual_seed(3)
    t = model.sample_t(4, 1e-3, 1.0, g).repeat_interleave(LAY.block_size, 1)
    masked = torch.rand(tok.shape, generator=g) < t
    assert (tok[~masked] == 0).all() and (tok[masked] > 0).all()


def test_block_size_one_tuned_schedule_is_ar_cross_entropy():
    lay = Layout(2, 0, 6, 1)
    model = make_model(lay, V, eps_min=1.0, eps_max=1.0)
    x0 = random_x0(lay, 2, V)
    lm = torch.ones_like(x0)
    lm[:, :2] = 0
    got = model.loss(x0, lm, generator=torch.Generator().manual_seed(0))
    ce = []
    for j in range(6):  # predict x_j from x_<j (the masked token sees only the clean prefix)
        s = 2 + j
        ids = torch.cat([x0[:, :s], torch.full((2, 1), model.mask_id)], 1)
        lg = model.backbone(ids, torch.arange(s + 1), inference_mask(lay, j), out_idx=torch.tensor([s]))[:, 0]
        lg[:, model.mask_id] = -float("inf")
        ce.append(-lg.log_softmax(-1).gather(1, x0[:, s:s + 1]).squeeze(1))
    torch.testing.assert_close(got, torch.stack(ce).mean(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("algo", ["bd3lm", "ar"])
def test_initial_loss_is_log_vocab(algo):
    v = 101
    model = make_model(LAY, v, algo=algo, randomize=False, dtype=torch.float32)
    x0 = random_x0(LAY, 16, v)
    lm = torch.ones_like(x0)
    lm[:, :LAY.question_len] = 0
    g = torch.Generator().manual_seed(0)
    loss = sum(model.loss(x0, lm, g).item() for _ in range(20)) / 20
    ref = math.log(v - 1) if algo == "bd3lm" else math.log(v)
    assert abs(loss - ref) / ref < 0.05


def test_ar_loss_matches_direct_cross_entropy():
    model = make_model(LAY, V, algo="ar")
    x0 = random_x0(LAY, 2, V)
    lm = torch.ones_like(x0)
    lm[:, :LAY.question_len] = 0
    got = model.loss(x0, lm)
    n = LAY.total_len
    logits = model.backbone(x0, torch.arange(n), torch.ones(n, n, dtype=torch.bool).tril())
    ref = torch.nn.functional.cross_entropy(logits[:, 2:-1].reshape(-1, V), x0[:, 3:].reshape(-1))
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)


def test_clip_search_picks_a_grid_interval_and_respects_fix_clipping():
    model = make_model(LAY, V)
    x0 = random_x0(LAY, 4, V)
    lm = torch.ones_like(x0)
    batches = [(x0, lm)]
    cands = model.candidate_intervals([0.5, 0.8], 0.1)
    assert (1e-3, 1.0) in cands and (0.0, 0.5) in cands and (0.5, 1.0) in cands and (0.2, 1.0) in cands
    best, scores = model.clip_search(batches, [0.5, 0.8], 0.1, fix_clipping=True)
    assert best in cands and float(model.sampling_eps_min) == pytest.approx(1e-3)
    best, scores = model.clip_search(batches, [0.5, 0.8], 0.1)
    assert scores[best] == min(scores.values())
    assert (float(model.sampling_eps_min), float(model.sampling_eps_max)) == pytest.approx(best)
