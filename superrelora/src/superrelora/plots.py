"""Loss curves (the logic of notebooks/plot_loss.ipynb): overlay runs, mark merge steps, summarise like the
original metrics_report.ipynb (final / min / max loss, final step, number of points).

    python scripts/plot_loss.py runs/table/lora runs/table/superrelora --out results/loss_curve.png
"""

from __future__ import annotations

import csv
from pathlib import Path

from shared_utils.runs import read_metrics


def read_losses(run_dir: str | Path) -> tuple[list[int], list[float], list[int]]:
    """(steps, losses, merge steps) from ``metrics.jsonl``, else from the original ``loss_log.csv`` format."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    if rows:
        pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        merges = [r["step"] for r in rows if "merge_count" in r]
    else:
        path = run_dir / "loss_log.csv"
        if not path.is_file():
            return [], [], []
        with path.open() as fh:
            pts = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]
        merges = []
    steps, losses = (list(x) for x in zip(*pts)) if pts else ([], [])
    return steps, losses, merges


def loss_summary(run_dir: str | Path) -> dict:
    steps, losses, merges = read_losses(run_dir)
    if not losses:
        return {"points": 0}
    return {"final_loss": losses[-1], "min_loss": min(losses), "max_loss": max(losses), "final_step": steps[-1],
            "points": len(losses), "mean_loss": sum(losses) / len(losses), "merges": merges}


def plot_losses(runs: dict[str, str | Path], out_png: str | Path, title: str | None = None, smooth: int = 1):
    """Overlay per-update training loss of several runs; dotted verticals at each run's merge steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (label, path) in enumerate(runs.items()):
        steps, losses, merges = read_losses(path)
        if not losses:
            continue
        ys = [sum(losses[max(0, j - smooth + 1): j + 1]) / len(losses[max(0, j - smooth + 1): j + 1])
              for j in range(len(losses))]
        line, = ax.plot(steps, ys, lw=1.3, label=label + (f" ({len(merges)} merges)" if merges else ""))
        for m in merges:
            ax.axvline(m, color=line.get_color(), ls=":", lw=1, alpha=0.7, ymax=0.15 + 0.05 * i)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("training loss" + (f" (moving mean of {smooth})" if smooth > 1 else ""))
    ax.set_title(title or "Training loss; dotted ticks = merge steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
