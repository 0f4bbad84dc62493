"""shared_utils.bench: sample collection, median / ratio intervals, limits, matmul peak."""

import pytest

from shared_utils import bench


def test_time_samples_counts_calls_and_warmup():
    calls = []
    s = bench.time_samples(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(s) == 5 and len(calls) == 7 and all(v >= 0 for v in s)
    with pytest.raises(ValueError):
        bench.time_samples(lambda: None, repeats=0)


def test_interleaved_rotates_order():
    order = []
    out = bench.interleaved_samples({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                    warmup=1, rounds=4)
    assert [len(v) for v in out.values()] == [4, 4]
    timed = order[2:]
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_median_and_ratio_intervals():
    base = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95] * 4
    fast = [1.0, 1.05, 0.95, 1.0, 1.02, 0.98] * 4
    m = bench.median_ci(base)
    assert m["mean"] == pytest.approx(2.0) and m["ci95"][0] <= 2.0 <= m["ci95"][1] and len(m["samples"]) == 24
    r = bench.ratio_ci(base, fast)  # speed-up of fast over base
    assert r["mean"] == pytest.approx(2.0) and 1.8 < r["ci95"][0] <= 2.0 <= r["ci95"][1] < 2.2
    assert bench.beyond_limit(r, 1.5) and not bench.beyond_limit(r, 2.5)
    assert bench.beyond_limit({"ci95": [0.7, 0.8]}, 0.9, higher_is_better=False)


def test_matmul_peak_is_plausible():
    import torch

    f = bench.matmul_peak_flops(torch.float32, n=256, repeats=3)
    assert 1e8 < f < 1e13  # between 0.1 GFLOP/s and 10 TFLOP/s on a CPU
