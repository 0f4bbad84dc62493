"""Overlay training-loss curves of runs with merge steps marked (same logic as notebooks/plot_loss.ipynb).

    python scripts/plot_loss.py runs/table_small/lora runs/table_small/superrelora --out results/loss_curve.png
"""

import argparse
import json
from pathlib import Path

from shared_utils.errors import cli_main
from superrelora.plots import loss_summary, plot_losses


@cli_main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="runs/loss_curve.png")
    p.add_argument("--smooth", type=int, default=1)
    a = p.parse_args()
    runs = {Path(d).name: Path(d) for d in a.run_dirs}
    for name, d in runs.items():
        print(name, json.dumps(loss_summary(d)))
    print("wrote", plot_losses(runs, a.out, smooth=a.smooth))


if __name__ == "__main__":
    main()
