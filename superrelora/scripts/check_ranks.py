"""Rank statistics of the learned update for finished runs (same logic as notebooks/check_ranks.ipynb).

    python scripts/check_ranks.py runs/table_small/lora runs/table_small/superrelora [--out runs/rank_spectra.png]
"""

import argparse
from pathlib import Path

from shared_utils.errors import UserError, cli_main
from superrelora.analysis import format_rank_table, rank_table
from superrelora.ranks import plot_spectra


@cli_main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="runs/rank_spectra.png")
    a = p.parse_args()
    runs = {Path(d).name: Path(d) for d in a.run_dirs}
    for d in runs.values():
        if not (d / "final_model").is_dir():
            raise UserError(f"{d}: no final_model/ (not a finished training run)")
    table = rank_table(runs)
    print(format_rank_table(table))
    plot_spectra({k: t["spectrum"] for k, t in table.items()}, a.out, r=max(t["r"] for t in table.values()))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
