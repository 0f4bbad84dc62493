"""Timing for benchmark scripts: warm-up, repeats, interleaved rounds, medians and ratios with 95% intervals.

Benchmarks (not timed tests) measure speed. The pattern every project uses::

    samples = interleaved_samples({"baseline": step_a, "method": step_b}, warmup=2, rounds=20)
    ratio = ratio_ci(samples["method"], samples["baseline"])      # metric dict: median ratio + bootstrap CI
    peak = matmul_peak_flops(torch.float32)                        # this machine, measured in the same run
    mfu = metric_value(step_flops / median(samples["method"]) / peak)

Interleaving the candidates round by round spreads background load (shared cores) over all of them instead of
letting it hit one; every sample is returned so that a script can store it beside the summary.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np

from .stats import LEVEL, N_BOOT, _percentile_ci, _vector


def _sync() -> None:
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    except ImportError:  # pragma: no cover
        pass


def time_once(fn: Callable[[], object]) -> float:
    """Seconds for one call of ``fn`` (CUDA synchronised before and after when CUDA is in use)."""
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def time_samples(fn: Callable[[], object], warmup: int = 2, repeats: int = 20) -> list[float]:
    """``warmup`` untimed calls, then ``repeats`` timed ones; returns every sample in seconds."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    for _ in range(warmup):
        fn()
    return [time_once(fn) for _ in range(repeats)]


def interleaved_samples(fns: Mapping[str, Callable[[], object]], warmup: int = 2,
                        rounds: int = 20) -> dict[str, list[float]]:
    """Each round times every candidate once, in an order that rotates from round to round."""
    if not fns:
        raise ValueError("interleaved_samples needs at least one candidate")
    if warmup < 0 or rounds < 1:
        raise ValueError(f"need warmup >= 0 and rounds >= 1, got {warmup}, {rounds}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(time_once(fns[name]))
    return out


def median_ci(samples: Sequence[float], n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """Median of timing samples with a bootstrap 95% interval (metric dict, unit 'repeat')."""
    x = _vector(samples, "timing samples")
    rng = np.random.default_rng(seed)
    boots = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    point = float(np.median(x))
    return {"mean": point, "ci95": _percentile_ci(boots, point, level), "n": int(x.size), "seeds": 1,
            "unit": "repeat (median)", "samples": [float(v) for v in x]}


def ratio_ci(num: Sequence[float], den: Sequence[float], n_boot: int = N_BOOT, seed: int = 0,
             level: float = LEVEL) -> dict:
    """median(num) / median(den) with a bootstrap 95% interval (both sides resampled independently).

    For a speed-up pass the baseline's times as ``num`` and the candidate's as ``den``; for a slowdown
    (step-time ratio) the other way round.
    """
    a, b = _vector(num, "numerator samples"), _vector(den, "denominator samples")
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, size=(n_boot, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, size=(n_boot, b.size))], axis=1)
    point = float(np.median(a) / np.median(b))
    return {"mean": point, "ci95": _percentile_ci(ma / mb, point, level), "n": int(min(a.size, b.size)),
            "seeds": 1, "unit": "repeat (ratio of medians)"}


def beyond_limit(ratio: Mapping, limit: float, higher_is_better: bool = True) -> bool:
    """True when the whole interval of ``ratio`` lies beyond its physical ``limit`` (a measurement bug until
    proven otherwise): above it for a speed-up, below it for a cost ratio whose floor is ``limit``."""
    lo, hi = ratio["ci95"]
    return lo > limit if higher_is_better else hi < limit


def matmul_peak_flops(dtype=None, n: int = 1024, repeats: int = 5, device: str = "cpu") -> float:
    """This machine's achieved matmul rate now (FLOP/s): best of ``repeats`` timed ``n x n @ n x n`` products after
    one warm-up, in ``dtype`` (default float32) on ``device``."""
    import torch

    dtype = dtype or torch.float32
    if n <= 0 or repeats < 1:
        raise ValueError(f"need n > 0 and repeats >= 1, got {n}, {repeats}")
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    torch.mm(a, b)
    best = min(time_once(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * n**3 / best
