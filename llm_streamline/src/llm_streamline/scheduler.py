"""The original's learning-rate schedule (LLM_Streamline/scheduler.py) and the horizons it was called with.

m(step) = step / max(1, W) while step < W; then, with p = (step - W) / max(1, T - W),
c = max(0, 0.5 * (1 + cos(pi * p))) and m = (min_lr + c * (lr - min_lr)) / lr. p is not clamped (beyond T the
cosine rises again), W and T may be floats.

Horizons (spec 2.6 / 2.7 / bug 9): the MSE script passed W = len(loader) * epochs * 0.01 * 0.5 and
T = len(loader) * epochs * 0.5 in *micro-batch* units but stepped the scheduler only on optimizer steps, so the
cosine barely decays (lr ends near 1.94e-4). ``horizons(..., mode="reference")`` reproduces those argument
values; the default ``"fixed"`` counts optimizer steps: W = warmup_ratio * T, T = number of optimizer steps.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

from shared_utils.errors import UserError


def lr_multiplier(step: float, warmup: float, total: float, lr: float, min_lr: float) -> float:
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    coeff = max(0.0, 0.5 * (1.0 + math.cos(2 * math.pi * 0.5 * progress)))
    return (min_lr + coeff * (lr - min_lr)) / lr


def cosine_schedule(optimizer, warmup: float, total: float, lr: float, min_lr: float) -> LambdaLR:
    return LambdaLR(optimizer, lambda s: lr_multiplier(s, warmup, total, lr, min_lr))


def horizons(loader_len: int, epochs: int, grad_accum: int, kind: str, mode: str = "fixed",
             warmup_ratio: float = 0.01) -> tuple[float, float]:
    """(warmup, total) to pass to :func:`cosine_schedule`.

    Args:
        loader_len: micro-batches per epoch.
        kind: "mse" (scheduler stepped per optimizer step) or "llm" (stepped per micro-batch in the original).
        mode: "reference" reproduces the original's argument values; "fixed" uses the real number of
            scheduler steps (optimizer steps) as the horizon.
    """
    if mode == "reference":
        total = loader_len * epochs * 0.5
        warmup = loader_len * epochs * 0.01 * (1.0 if kind == "llm" else 0.5)
        return warmup, total
    if mode != "fixed":
        raise UserError(f"lr_schedule must be 'fixed' or 'reference', got '{mode}'")
    total = max(1, math.ceil(loader_len * epochs / grad_accum))
    warmup = warmup_ratio * total
    return (warmup if warmup >= 1 else 0.0), float(total)
