"""Intervals, paired comparisons and the results-table writer of ``../shared/EVIDENCE.md``.

One place computes every interval a results table shows:

- per-example metrics: percentile bootstrap over examples (:func:`metric_examples`, :func:`bootstrap_fn` for
  statistics that are not a plain mean, such as R^2 or a ratio of means);
- per-run metrics: Student-t interval over seeds (:func:`metric_seeds`);
- both: a two-level bootstrap, seeds then examples (:func:`metric_seeds_examples`);
- token streams (perplexity): a block bootstrap over contiguous blocks (:func:`block_bootstrap_metric`);
- paired differences on the same examples / seeds (:func:`paired_diff`), with :func:`verdict_line` wording a claim
  only when the interval excludes 0.

:class:`ResultsTable` collects rows and comparisons and writes ``<name>.json`` (the EVIDENCE.md shape) and
``<name>.md`` (mean and interval per cell, the counts, a comparisons section, the verdict, notes).

Every metric is a plain dict ``{"mean", "ci95": [lo, hi], "n", "seeds", "unit"}`` so projects can add fields.
Only numpy is needed (no scipy); the t quantile is computed from the regularised incomplete beta function.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


# ----------------------------------------------------------------------------------------------- basic helpers
def _vector(values: Iterable[float], what: str = "values") -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what}: no values (an interval needs at least one)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: non-finite value among {arr.size}")
    return arr


def _matrix(values: Any, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what}: expected a non-empty [seeds][examples] matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: non-finite value")
    return arr


def _percentile_ci(samples: np.ndarray, point: float, level: float = LEVEL) -> list[float]:
    """Percentile interval of bootstrap ``samples``, widened (if ever needed) to contain ``point``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return [float(min(lo, point)), float(max(hi, point))]


_STATS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}


def _stat(stat: str | Callable) -> Callable[..., np.ndarray]:
    if callable(stat):
        return stat
    try:
        return _STATS[stat]
    except KeyError:
        raise ValueError(f"stat must be one of {sorted(_STATS)} or a callable, got {stat!r}") from None


def bootstrap_ci(values: Iterable[float], stat: str | Callable = "mean", n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the examples in ``values``."""
    x = _vector(values)
    fn = _stat(stat)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = fn(x[idx], axis=1)
    lo, hi = _percentile_ci(boots, float(fn(x)), level)
    return lo, hi


# ----------------------------------------------------------------------------------------------- t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student-t cumulative distribution function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`, ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values: Iterable[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean (needs at least 2 values)."""
    x = _vector(values)
    if x.size < 2:
        raise ValueError("a t-interval over seeds needs at least 2 seeds")
    m = float(x.mean())
    half = t_quantile(0.5 + level / 2.0, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m - half, m + half


def wilson_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = _normal_quantile(0.5 + level / 2.0)
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return centre - half, centre + half


def _normal_quantile(p: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------------------------- metric dicts
def metric_value(mean: float | None, ci95: Sequence[float] | None = None, n: int | None = None, **extra) -> dict:
    """Wrap an already computed number (``ci95=None`` for a mean-only entry such as a physical ``limit``;
    ``mean=None`` for an explicitly absent value, e.g. a GPU preset that has not run)."""
    out: dict[str, Any] = {"mean": None if mean is None else float(mean)}
    if ci95 is not None:
        out["ci95"] = [float(ci95[0]), float(ci95[1])]
    if n is not None:
        out["n"] = int(n)
    out.update(extra)
    return out


def metric_examples(values: Iterable[float], n_boot: int = N_BOOT, seed: int = 0, stat: str | Callable = "mean",
                    level: float = LEVEL) -> dict:
    """Per-example values (one run) -> mean (or median) with a percentile-bootstrap 95% interval."""
    x = _vector(values)
    point = float(_stat(stat)(x))
    lo, hi = bootstrap_ci(x, stat, n_boot, seed, level)
    return {"mean": point, "ci95": [lo, hi], "n": int(x.size), "seeds": 1, "unit": "example"}


def metric_seeds(values: Iterable[float], level: float = LEVEL) -> dict:
    """One value per seed (run) -> mean with a Student-t 95% interval over seeds."""
    x = _vector(values)
    lo, hi = t_interval(x, level)
    return {"mean": float(x.mean()), "ci95": [lo, hi], "n": int(x.size), "seeds": int(x.size), "unit": "seed"}


def _two_level_boot(m: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap means of a [seeds][examples] matrix: resample seeds, and (shared) examples, with replacement."""
    rng = np.random.default_rng(seed)
    s, e = m.shape
    out = np.empty(n_boot)
    for b in range(n_boot):
        ei = rng.integers(0, e, size=e)
        si = rng.integers(0, s, size=s)
        out[b] = m[:, ei].mean(axis=1)[si].mean()
    return out


def metric_seeds_examples(matrix: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                          fn: Callable[[float], float] | None = None) -> dict:
    """[n_seeds][n_examples] per-example values of several runs on the same examples -> grand mean with a
    two-level bootstrap interval (seeds resampled, then examples), so both sources of noise are counted.

    ``fn`` maps a mean to the reported value (``math.exp`` for perplexity from per-example NLL); it must be
    monotone increasing so that the interval maps through it."""
    m = _matrix(matrix)
    f = fn or (lambda v: v)
    point = float(f(float(m.mean())))
    boots = np.array([f(float(v)) for v in _two_level_boot(m, n_boot, seed)])
    ci = _percentile_ci(boots, point, level)
    return {"mean": point, "ci95": ci, "n": int(m.shape[1]), "seeds": int(m.shape[0]), "unit": "seed+example"}


def bootstrap_fn(fn: Callable[..., float], *arrays: Any, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL, unit: str = "example") -> dict:
    """Bootstrap a statistic that is not a plain mean (R^2, a ratio of means, a centred cosine over a set...).

    ``arrays`` share their first axis (examples); each resample draws the same example indices for all of them
    and calls ``fn(*resampled)``. Returns a metric dict with the statistic on the full data as ``mean``.
    """
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("bootstrap_fn needs at least one array")
    n = arrs[0].shape[0]
    if n == 0 or any(a.shape[0] != n for a in arrs):
        raise ValueError(f"bootstrap_fn: arrays must share a non-empty first axis, got {[a.shape for a in arrs]}")
    point = float(fn(*arrs))
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        boots[b] = fn(*(a[idx] for a in arrs))
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        raise ValueError("bootstrap_fn: the statistic was non-finite on every resample")
    return {"mean": point, "ci95": _percentile_ci(boots, point, level), "n": int(n), "seeds": 1, "unit": unit}


def block_bootstrap_metric(values: Iterable[float], block: int = 128, fn: Callable[[float], float] | None = None,
                           n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """Token-level values (e.g. per-token NLL in text order) -> mean with a block-bootstrap interval.

    The stream is cut into contiguous blocks of ``block`` tokens (the last one may be shorter); blocks are
    resampled with replacement and the token-weighted mean recomputed, which keeps the correlation between
    neighbouring tokens. ``fn`` maps a mean to the reported value (``math.exp`` for perplexity from NLL); it must
    be monotone increasing so that the interval maps through it.
    """
    x = _vector(values)
    if block <= 0:
        raise ValueError(f"block must be positive, got {block}")
    starts = np.arange(0, x.size, block)
    sums = np.add.reduceat(x, starts)
    counts = np.diff(np.append(starts, x.size)).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, starts.size, size=(n_boot, starts.size))
    boots = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    f = fn or (lambda v: v)
    point = float(f(float(x.mean())))
    mapped = np.array([f(float(v)) for v in boots])
    return {"mean": point, "ci95": _percentile_ci(mapped, point, level), "n": int(x.size), "seeds": 1,
            "unit": f"token (block bootstrap, {starts.size} blocks of {block})"}


# ----------------------------------------------------------------------------------------------- comparisons
def paired_diff(a: Any, b: Any, unit: str = "example", n_boot: int = N_BOOT, seed: int = 0,
                level: float = LEVEL) -> dict:
    """Paired difference a - b on the same items.

    1-D with ``unit="example"``: bootstrap of the mean difference over examples; 1-D with ``unit="seed"``:
    t-interval of the per-seed differences; 2-D [seeds][examples]: two-level bootstrap of the differences.
    Identical inputs give a zero-width interval at 0.
    """
    aa, bb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if aa.shape != bb.shape:
        raise ValueError(f"paired_diff needs the same items on both sides, got shapes {aa.shape} and {bb.shape}")
    d = aa - bb
    if d.ndim == 2:
        m = metric_seeds_examples(d, n_boot, seed, level)
    elif unit == "seed":
        m = metric_seeds(d, level)
    elif unit == "example":
        m = metric_examples(d, n_boot, seed, "mean", level)
    else:
        raise ValueError(f"unit must be 'example' or 'seed' for 1-D inputs, got {unit!r}")
    out = {"diff": m["mean"], "ci95": m["ci95"], "n": m["n"], "paired": True, "unit": m["unit"]}
    if m.get("seeds", 1) > 1:
        out["seeds"] = m["seeds"]
    return out


def as_comparison(metric: Mapping) -> dict:
    """Turn a metric dict of a paired statistic (e.g. from :func:`bootstrap_fn` on a difference) into a comparison."""
    out = {"diff": metric["mean"], "ci95": list(metric["ci95"]), "n": metric.get("n"), "paired": True,
           "unit": metric.get("unit", "example")}
    return out


def excludes_zero(comparison: Mapping) -> bool:
    ci = comparison.get("ci95")
    return bool(ci) and (ci[0] > 0 or ci[1] < 0)


def verdict_line(a: str, b: str, metric: str, comparison: Mapping, higher_is_better: bool = True) -> str:
    """One sentence per comparison that claims only what the paired interval supports."""
    d, (lo, hi) = comparison["diff"], comparison["ci95"]
    span = f"{metric} difference {_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}], n={comparison.get('n')}"
    if not excludes_zero(comparison):
        return f"no difference between {a} and {b} on {metric} at this scale ({span}; the interval includes 0)"
    a_wins = (lo > 0) == higher_is_better
    win, lose = (a, b) if a_wins else (b, a)
    return f"{win} beats {lose} on {metric} ({span}; paired 95% interval excludes 0)"


# ----------------------------------------------------------------------------------------------- results table
def machine_name() -> str:
    """The GPU's name when CUDA is in use, else '<cores>-core CPU (<arch>)'."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if v != v:  # nan
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3g}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}" if a >= 1 else f"{v:.4g}"


class ResultsTable:
    """Rows of metric dicts + paired comparisons + a verdict, written as ``.json`` (EVIDENCE.md) and ``.md``."""

    def __init__(self, table: str, command: str, preset: str = "cpu", machine: str | None = None,
                 date: str | None = None, **meta: Any):
        self.table, self.command, self.preset = table, command, preset
        self.machine = machine or machine_name()
        self.date = date or _dt.date.today().isoformat()
        self.meta = dict(meta)  # extra top-level keys (scale, data, tokens seen ...)
        self.rows: dict[str, dict] = {}
        self.comparisons: list[dict] = []
        self.verdict = ""
        self.notes: list[str] = []
        self._t0 = time.time()
        self.wall_s: float | None = None

    def add(self, method: str, metric: str, value: Mapping, **row_fields: Any) -> "ResultsTable":
        """Add ``metric`` (a metric dict) to row ``method``; ``row_fields`` are stored on the row (e.g. flag)."""
        if not isinstance(value, Mapping) or "mean" not in value:
            raise ValueError(f"{method}.{metric}: a metric is a dict with at least 'mean', got {value!r}")
        row = self.rows.setdefault(method, {"method": method, "metrics": {}})
        row["metrics"][metric] = dict(value)
        row.update(row_fields)
        return self

    def add_row_fields(self, method: str, **fields: Any) -> "ResultsTable":
        self.rows.setdefault(method, {"method": method, "metrics": {}}).update(fields)
        return self

    def compare(self, a: str, b: str, metric: str, comparison: Mapping) -> dict:
        c = {"a": a, "b": b, "metric": metric, **dict(comparison)}
        self.comparisons.append(c)
        return c

    def auto_verdict(self, higher_is_better: Mapping[str, bool] | None = None, prefix: str = "") -> str:
        hib = dict(higher_is_better or {})
        lines = [verdict_line(c["a"], c["b"], c["metric"], c, hib.get(c["metric"], True)) for c in self.comparisons]
        self.verdict = (prefix + " " if prefix else "") + ("; ".join(lines) if lines else "no comparisons")
        return self.verdict

    def to_dict(self) -> dict:
        wall = self.wall_s if self.wall_s is not None else round(time.time() - self._t0, 1)
        out = {"table": self.table, "command": self.command, "preset": self.preset, "machine": self.machine,
               "date": self.date, "wall_s": wall}
        out.update(self.meta)
        out["rows"] = list(self.rows.values())
        out["comparisons"] = self.comparisons
        out["verdict"] = self.verdict
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def metric_names(self) -> list[str]:
        names: list[str] = []
        for r in self.rows.values():
            for k in r["metrics"]:
                if k not in names:
                    names.append(k)
        return names

    def to_markdown(self, data: dict | None = None) -> str:
        d = data or self.to_dict()
        return render_markdown(d)

    def write(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write ``<prefix>.json`` and ``<prefix>.md`` atomically; returns both paths."""
        from .runs import atomic_write_text

        if not self.verdict:
            raise ValueError(f"{self.table}: set a verdict (or call auto_verdict) before writing")
        prefix = Path(prefix)
        if prefix.suffix in (".json", ".md"):
            prefix = prefix.with_suffix("")
        d = self.to_dict()
        j = atomic_write_text(prefix.with_suffix(".json"), json.dumps(d, indent=2, default=_jsonable) + "\n")
        m = atomic_write_text(prefix.with_suffix(".md"), render_markdown(d))
        return j, m


def _jsonable(o: Any):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _cell(m: Mapping | None) -> str:
    if not m:
        return ""
    if m.get("mean") is None:
        return "absent"
    ci = m.get("ci95")
    s = _fmt(m["mean"])
    return f"{s} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else s


def render_markdown(d: Mapping) -> str:
    """The ``.md`` view of a results dict: header, table of means with 95% intervals, counts, comparisons,
    verdict and notes."""
    rows = d.get("rows", [])
    names: list[str] = []
    for r in rows:
        for k in r.get("metrics", {}):
            if k not in names:
                names.append(k)
    extra_cols = [k for k in ("flag",) if any(k in r for r in rows)]
    out = [f"# {d.get('table')}", ""]
    out.append(f"Command: `{d.get('command')}` | preset: {d.get('preset')} | machine: {d.get('machine')} | "
               f"date: {d.get('date')} | wall: {_fmt(d.get('wall_s'))} s")
    out += ["", "Each cell: mean [95% interval]. Counts (n, seeds, interval kind) are listed under the table.", ""]
    header = ["method"] + names + extra_cols
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        cells = [str(r.get("method"))] + [_cell(r.get("metrics", {}).get(k)) for k in names]
        cells += [str(r.get(k, "")) for k in extra_cols]
        out.append("| " + " | ".join(cells) + " |")
    counts = []
    for k in names:
        seen = []
        for r in rows:
            m = r.get("metrics", {}).get(k)
            if m and m.get("mean") is not None:
                tag = f"n={m.get('n', '-')}, seeds={m.get('seeds', '-')}, {m.get('unit', 'value')}"
                if tag not in seen:
                    seen.append(tag)
        if seen:
            counts.append(f"- `{k}`: " + "; ".join(seen))
    if counts:
        out += ["", "Counts:", *counts]
    comps = d.get("comparisons") or []
    if comps:
        out += ["", "## Paired comparisons", "", "| a | b | metric | a - b [95% interval] | n | excludes 0 |",
                "|---|---|---|---|---|---|"]
        for c in comps:
            ci = c.get("ci95") or [None, None]
            out.append(f"| {c.get('a')} | {c.get('b')} | {c.get('metric')} | {_fmt(c.get('diff'))} "
                       f"[{_fmt(ci[0])}, {_fmt(ci[1])}] | {c.get('n', '-')} | {'yes' if excludes_zero(c) else 'no'} |")
    out += ["", "## Verdict", "", str(d.get("verdict", ""))]
    notes = d.get("notes") or []
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
