"""Plan-abstraction analysis of hierarchical GSM8K records (the fork's analyze_gsm8k_plans.py, same quirks).

number count = matches of the regex "one or more digits" ("3.5" counts 2; every `<<...>>` annotation re-counts
its operands); operation count = occurrences of the characters + - * / = < >; length = whitespace words.
`strip_annotations=True` removes `<<...>>` from the execution first (our optional variant).

python scripts/analysis/analyze_gsm8k_plans.py --data_path FILE --output_plot gsm8k_analysis.png
"""

from __future__ import annotations

import re
import statistics

from shared_utils.answers import strip_calculator_annotations

NUM_RE = re.compile(r"\d+")
OPS = set("+-*/=<>")
CATEGORIES = (("Perfect (0 numbers)", 0, 0), ("Mostly abstract (1-2)", 1, 2),
              ("Somewhat concrete (3-5)", 3, 5), ("Too concrete (>5)", 6, 10**9))


def count_numbers(text: str) -> int:
    return len(NUM_RE.findall(str(text)))


def count_operations(text: str) -> int:
    return sum(ch in OPS for ch in str(text))


def word_len(text: str) -> int:
    return len(str(text).split())


def analyze(records: list[dict], strip_annotations: bool = False) -> dict:
    ex = [strip_calculator_annotations(r["execution"]) if strip_annotations else r["execution"] for r in records]
    pn = [count_numbers(r["plan"]) for r in records]
    en = [count_numbers(e) for e in ex]
    po = [count_operations(r["plan"]) for r in records]
    eo = [count_operations(e) for e in ex]
    pl = [word_len(r["plan"]) for r in records]
    el = [word_len(e) for e in ex]
    n = len(records)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    cats = {}
    for name, lo, hi in CATEGORIES:
        c = sum(lo <= x <= hi for x in pn)
        cats[name] = {"count": c, "percent": 100.0 * c / n}
    return {
        "n": n,
        "plan_numbers_mean": mean(pn), "plan_numbers_median": statistics.median(pn),
        "plan_zero_numbers_pct": 100.0 * sum(x == 0 for x in pn) / n,
        "plan_lt3_numbers_pct": 100.0 * sum(x < 3 for x in pn) / n,
        "exec_numbers_mean": mean(en), "exec_numbers_median": statistics.median(en),
        "plan_ops_mean": mean(po), "exec_ops_mean": mean(eo),
        "plan_words_mean": mean(pl), "plan_words_median": statistics.median(pl),
        "exec_words_mean": mean(el), "exec_words_median": statistics.median(el),
        # null (rendered "inf") when the plans have none: the fork divided by 1e-10 and printed 1e11
        "number_ratio": mean(en) / mean(pn) if mean(pn) else None,
        "ops_ratio": mean(eo) / mean(po) if mean(po) else None,
        "categories": cats,
        "good_abstraction_rate": 100.0 * sum(x <= 2 for x in pn) / n,
        "pct_plans_gt5_numbers": cats["Too concrete (>5)"]["percent"],
        "_series": {"plan_numbers": pn, "exec_numbers": en, "plan_ops": po, "exec_ops": eo,
                    "plan_words": pl, "exec_words": el},
    }


def ratio_text(num: float, den: float) -> str:
    """exec/plan ratio as text; `inf` when the plans have none (the fork divided by 1e-10 and printed 1e11)."""
    if den == 0:
        return "inf" if num > 0 else "n/a (both 0)"
    return f"{num / den:.2f}x"


def report_lines(res: dict) -> list[str]:
    out = [f"Examples: {res['n']}",
           f"Plan numbers: mean {res['plan_numbers_mean']:.2f}, median {res['plan_numbers_median']:.1f}, "
           f"0 numbers {res['plan_zero_numbers_pct']:.1f}%, <3 numbers {res['plan_lt3_numbers_pct']:.1f}%",
           f"Execution numbers: mean {res['exec_numbers_mean']:.2f}, median {res['exec_numbers_median']:.1f}",
           f"Operations: plan {res['plan_ops_mean']:.2f}, execution {res['exec_ops_mean']:.2f}",
           f"Words: plan {res['plan_words_mean']:.1f} (median {res['plan_words_median']:.1f}), "
           f"execution {res['exec_words_mean']:.1f} (median {res['exec_words_median']:.1f})",
           f"Ratio exec/plan: numbers {ratio_text(res['exec_numbers_mean'], res['plan_numbers_mean'])}, "
           f"operations {ratio_text(res['exec_ops_mean'], res['plan_ops_mean'])}",
           "Abstraction quality:"]
    out += [f"  {k:<26} {v['count']:>6} ({v['percent']:.1f}%)" for k, v in res["categories"].items()]
    out.append(f"Good abstraction rate (<=2 numbers): {res['good_abstraction_rate']:.1f}%")
    return out


def plot(res: dict, path) -> None:
    """The README's 4-panel figure (2x2, 12x10 in, 150 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["_series"]
    fig, ax = plt.subplots(2, 2, figsize=(12, 10))
    ax[0, 0].hist([s["plan_numbers"], s["exec_numbers"]], bins=20, label=["Plan", "Execution"], alpha=0.7)
    ax[0, 0].set(title="Number count distribution", xlabel="numbers per text", ylabel="count")
    ax[0, 0].legend()
    ax[0, 1].hist([s["plan_ops"], s["exec_ops"]], bins=15, label=["Plan", "Execution"], alpha=0.7)
    ax[0, 1].set(title="Math operation distribution", xlabel="operations per text", ylabel="count")
    ax[0, 1].legend()
    ax[1, 0].boxplot([s["plan_words"], s["exec_words"]], tick_labels=["Plan", "Execution"])
    ax[1, 0].set(title="Text length (words)", ylabel="words")
    ax[1, 1].scatter(s["plan_numbers"], s["exec_numbers"], alpha=0.3)
    hi = max(max(s["plan_numbers"]), max(s["exec_numbers"]), 1)
    ax[1, 1].plot([0, hi], [0, hi], "k--", label="y = x")
    ax[1, 1].set(title="Plan vs Execution numbers", xlabel="plan numbers", ylabel="execution numbers")
    ax[1, 1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
