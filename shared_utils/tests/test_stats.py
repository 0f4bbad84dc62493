"""shared_utils.stats against exact or textbook values."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_utils import stats

# Textbook two-sided 95% t quantiles (t_{0.975, df}).
T975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105, 7: 2.364624252, 9: 2.262157163, 29: 2.045229642,
        120: 1.979930405}


@pytest.mark.parametrize("df,q", sorted(T975.items()))
def test_t_quantile_matches_table(df, q):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-8)
    assert stats.t_quantile(0.025, df) == pytest.approx(-q, abs=1e-8)


def test_t_quantile_against_scipy_if_available():
    sp = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 8, 13, 50, 500):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert stats.t_quantile(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-9, abs=1e-9)


def test_metric_seeds_hand_computed_t_interval():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, sd sqrt(2.5), n 5, t_{.975,4} = 2.776445105
    m = stats.metric_seeds(x)
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert m["mean"] == 3.0 and m["n"] == 5 and m["seeds"] == 5 and m["unit"] == "seed"
    assert m["ci95"] == pytest.approx([3 - half, 3 + half], abs=1e-8)
    sp = pytest.importorskip("scipy.stats")
    lo, hi = sp.t.interval(0.95, 4, loc=3.0, scale=sp.sem(x))
    assert m["ci95"] == pytest.approx([lo, hi], abs=1e-9)


def test_metric_seeds_needs_two():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.metric_seeds([0.5])


def test_bernoulli_bootstrap_matches_wilson_and_normal_at_large_n():
    rng = np.random.default_rng(1)
    n = 4000
    x = (rng.random(n) < 0.3).astype(float)
    m = stats.metric_examples(x, n_boot=4000)
    p = x.mean()
    normal = 1.959964 * math.sqrt(p * (1 - p) / n)
    wl, wh = stats.wilson_ci(int(x.sum()), n)
    assert m["mean"] == pytest.approx(p)
    assert m["ci95"][0] == pytest.approx(p - normal, abs=0.003)
    assert m["ci95"][1] == pytest.approx(p + normal, abs=0.003)
    assert m["ci95"] == pytest.approx([wl, wh], abs=0.003)
    assert m["n"] == n and m["unit"] == "example"


def test_wilson_textbook_value():
    lo, hi = stats.wilson_ci(8, 10)  # Newcombe (1998): 0.4902, 0.9433 for 8/10
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    with pytest.raises(ValueError):
        stats.wilson_ci(3, 2)


def test_paired_diff_identical_has_zero_width_and_no_claim():
    a = np.random.default_rng(0).random(50)
    for unit in ("example", "seed"):
        c = stats.paired_diff(a, a, unit=unit) if unit == "example" else stats.paired_diff(a[:5], a[:5], unit=unit)
        assert c["diff"] == 0.0 and c["ci95"] == [0.0, 0.0] and c["paired"] is True
        assert not stats.excludes_zero(c)
    c2 = stats.paired_diff(np.ones((3, 10)), np.ones((3, 10)))
    assert c2["ci95"] == [0.0, 0.0] and c2["seeds"] == 3


def test_paired_diff_detects_a_consistent_shift_that_unpaired_noise_hides():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 5, size=200)  # large between-example spread
    a, b = base + 0.3 + rng.normal(0, 0.1, 200), base
    c = stats.paired_diff(a, b)
    assert stats.excludes_zero(c) and c["ci95"][0] > 0.2
    assert "a beats b" in stats.verdict_line("a", "b", "acc", c)
    assert "b beats a" in stats.verdict_line("a", "b", "ppl", c, higher_is_better=False)
    # the unpaired intervals overlap heavily
    ma, mb = stats.metric_examples(a), stats.metric_examples(b)
    assert ma["ci95"][0] < mb["ci95"][1]


def test_paired_diff_shape_mismatch():
    with pytest.raises(ValueError, match="same items"):
        stats.paired_diff([1, 2, 3], [1, 2])


def test_seeds_examples_two_level_is_wider_than_either_level_alone():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.1, size=(6, 1))
    m = np.clip(0.5 + seed_effect + rng.normal(0, 0.3, size=(6, 300)), 0, 1)
    both = stats.metric_seeds_examples(m)
    only_seeds = stats.metric_seeds(m.mean(axis=1))
    only_examples = stats.metric_examples(m.mean(axis=0))
    w = lambda d: d["ci95"][1] - d["ci95"][0]  # noqa: E731
    assert both["mean"] == pytest.approx(m.mean())
    assert w(both) > w(only_examples)
    assert both["seeds"] == 6 and both["n"] == 300 and both["unit"] == "seed+example"
    assert 0.5 * w(only_seeds) < w(both) < 2.5 * w(only_seeds)
    ppl = stats.metric_seeds_examples(m, fn=math.exp)
    assert ppl["mean"] == pytest.approx(math.exp(m.mean()))
    assert ppl["ci95"] == pytest.approx([math.exp(v) for v in both["ci95"]])


def test_bootstrap_fn_ratio_and_r2():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(400, 3))
    pred = y + rng.normal(scale=0.5, size=y.shape)

    def r2(p, t):
        return 1 - ((p - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()

    m = stats.bootstrap_fn(r2, pred, y)
    assert m["mean"] == pytest.approx(r2(pred, y))
    assert m["ci95"][0] < m["mean"] < m["ci95"][1] and m["ci95"][1] - m["ci95"][0] < 0.1
    ratio = stats.bootstrap_fn(lambda a, b: a.mean() / b.mean(), np.full(50, 2.0), np.full(50, 4.0))
    assert ratio["mean"] == 0.5 and ratio["ci95"] == [0.5, 0.5]
    comp = stats.as_comparison(stats.bootstrap_fn(lambda a, b: a.mean() - b.mean(), np.ones(9), np.zeros(9)))
    assert comp["diff"] == 1.0 and stats.excludes_zero(comp)


def test_block_bootstrap_perplexity():
    rng = np.random.default_rng(0)
    nll = rng.gamma(2.0, 1.5, size=4096)
    m = stats.block_bootstrap_metric(nll, block=128, fn=math.exp)
    assert m["mean"] == pytest.approx(math.exp(nll.mean()))
    assert m["ci95"][0] < m["mean"] < m["ci95"][1]
    assert m["n"] == 4096 and "32 blocks" in m["unit"]
    # correlated stream: neighbouring tokens share a level -> the block interval is wider than the iid one
    levels = np.repeat(rng.normal(3, 1, size=32), 128)
    corr = levels + rng.normal(0, 0.1, size=levels.size)
    blk = stats.block_bootstrap_metric(corr, block=128)
    iid = stats.metric_examples(corr)
    assert blk["ci95"][1] - blk["ci95"][0] > 5 * (iid["ci95"][1] - iid["ci95"][0])


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="no values"):
        stats.metric_examples([])
    with pytest.raises(ValueError, match="non-finite"):
        stats.metric_examples([1.0, float("nan")])


def test_results_table_writes_evidence_shape(tmp_path):
    t = stats.ResultsTable("demo", "make table", preset="cpu", scale="tiny")
    a = np.array([1, 1, 0, 1, 1, 1, 0, 1] * 25, dtype=float)
    b = np.array([0, 1, 0, 0, 1, 0, 0, 1] * 25, dtype=float)
    t.add("mean predictor", "accuracy", stats.metric_examples(b))
    t.add("method", "accuracy", stats.metric_examples(a))
    t.add("method", "limit", stats.metric_value(1.0))
    t.compare("method", "mean predictor", "accuracy", stats.paired_diff(a, b))
    with pytest.raises(ValueError, match="verdict"):
        t.write(tmp_path / "demo")
    t.auto_verdict()
    t.notes.append("a note")
    jp, mp = t.write(tmp_path / "demo")
    d = json.loads(jp.read_text())
    assert [r["method"] for r in d["rows"]] == ["mean predictor", "method"]
    for key in ("table", "command", "preset", "machine", "date", "wall_s", "rows", "comparisons", "verdict"):
        assert key in d
    assert d["scale"] == "tiny" and d["verdict"].startswith("method beats mean predictor on accuracy")
    md = mp.read_text()
    assert "| method | accuracy | limit |" in md and "## Paired comparisons" in md and "a note" in md
    assert "0.75 [" in md
    # the workspace checker (when the shared folder is beside the checkout) accepts it
    checker = Path(__file__).resolve().parents[2] / ".." / "shared" / "tools" / "check_evidence.py"
    if checker.exists():
        r = subprocess.run([sys.executable, str(checker), str(jp)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_verdict_never_claims_a_win_on_overlapping_interval():
    c = {"diff": 0.1, "ci95": [-0.05, 0.25], "n": 30}
    line = stats.verdict_line("x", "y", "r2", c)
    assert "beats" not in line and "no difference" in line and "at this scale" in line
