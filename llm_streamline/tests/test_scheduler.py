"""The original's LR schedule and its horizons.  python -m pytest tests/test_scheduler.py -q"""

import math

import pytest
import torch

from llm_streamline.scheduler import cosine_schedule, horizons, lr_multiplier


def test_formula_at_key_steps():
    lr, mn, W, T = 2e-4, 5e-5, 10, 110
    assert lr_multiplier(0, W, T, lr, mn) == 0
    assert lr_multiplier(5, W, T, lr, mn) == pytest.approx(0.5)
    assert lr_multiplier(W, W, T, lr, mn) == pytest.approx(1.0)
    assert lr_multiplier(60, W, T, lr, mn) * lr == pytest.approx((mn + lr) / 2)
    assert lr_multiplier(T, W, T, lr, mn) * lr == pytest.approx(mn)
    # not clamped: past T the cosine rises again, as in the original
    assert lr_multiplier(T + 50, W, T, lr, mn) * lr == pytest.approx((mn + lr) / 2)


def test_reference_horizons_reproduce_original_argument_values():
    # MSE: len(loader) * epochs * 0.01 * 0.5 and len(loader) * epochs * 0.5
    assert horizons(1000, 1, 16, "mse", "reference") == (5.0, 500.0)
    # LLM loss: warmup len * epochs * 0.01, total len * epochs * 0.5
    assert horizons(1000, 2, 16, "llm", "reference") == (20.0, 1000.0)


def test_reference_mse_lr_barely_decays_fixed_reaches_min():
    """The original stepped per optimizer step (1000 / 16 = 63 steps) against a 500-step horizon."""
    lr, mn = 2e-4, 5e-5
    w, t = horizons(1000, 1, 16, "mse", "reference")
    end = lr * lr_multiplier(math.ceil(1000 / 16), w, t, lr, mn)
    assert end == pytest.approx(1.94e-4, abs=1e-6)
    w, t = horizons(1000, 1, 16, "mse", "fixed")
    assert t == 63 and lr * lr_multiplier(t, w, t, lr, mn) == pytest.approx(mn)


def test_lambda_scheduler_uses_the_formula():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = cosine_schedule(opt, 2, 10, 1e-3, 1e-4)
    lrs = []
    for _ in range(11):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[2] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-4)
