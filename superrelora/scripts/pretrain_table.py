"""The pre-training comparison table (make table): small Llama from scratch, warm start, every method, >= 3 seeds.

    python scripts/pretrain_table.py --preset cpu --threads 1          # -> results/pretrain_table.{json,md}, PNGs
    python scripts/pretrain_table.py --preset gpu                      # one H200, bf16, llama_160m shape
    python scripts/pretrain_table.py --preset gpu --dry_run            # the gpu preset's code path on CPU, tiny
    python scripts/pretrain_table.py --preset smoke --text_file tests/data/tiny_corpus.txt --results runs/smoke_res

Resumable: each (seed, row) is written to <out_root>/seed<k>/<row>/row.json and skipped when present.
"""

import argparse
import sys
import time
from pathlib import Path

from shared_utils.errors import UserError, cli_main
from shared_utils.runs import check_output_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent.parent / "shared" / "data"


@cli_main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["cpu", "gpu", "smoke"], default="cpu")
    p.add_argument("--data_dir", default=str(DEFAULT_DATA), help="folder laid out like ../shared/data")
    p.add_argument("--text_file", default=None, help="one text file instead (last fifth held out)")
    p.add_argument("--out_root", default=None, help="per-run outputs (default runs/pretrain_<preset>)")
    p.add_argument("--results", default="results", help="where the table and PNGs go")
    p.add_argument("--rows", default=None, help="comma-separated subset of rows")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    p.add_argument("--sweep_seeds", default=None, help="seeds of the merge_every sweep rows (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dry_run", action="store_true", help="the preset's code path with 2 updates, no results")
    a = p.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else None
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {a.seeds!r}") from None
    try:
        sweep_seeds = [int(s) for s in a.sweep_seeds.split(",")] if a.sweep_seeds else None
    except ValueError:
        raise UserError(f"--sweep_seeds must be comma-separated integers, got {a.sweep_seeds!r}") from None
    if a.threads is not None and a.threads < 1:
        raise UserError(f"--threads must be >= 1, got {a.threads}")
    text_file = Path(a.text_file) if a.text_file else None
    if text_file is not None and not text_file.is_file():
        raise UserError(f"--text_file {text_file} does not exist")
    data_dir = Path(a.data_dir)
    if text_file is None and not (data_dir / "wikitext2" / "valid.txt").is_file():
        raise UserError(f"--data_dir {data_dir}: no wikitext2/valid.txt (give the ../shared/data folder or "
                        "--text_file)")
    out_root = Path(a.out_root or f"runs/pretrain_{a.preset}{'_dryrun' if a.dry_run else ''}")
    check_output_path(out_root, "--out_root")
    check_output_path(a.results, "--results")
    from superrelora.pretrain import PRESETS, rows_for  # imports torch: after the cheap checks

    preset = dict(PRESETS[a.preset])
    rows = a.rows.split(",") if a.rows else None
    unknown = sorted(set(rows or []) - set(rows_for(preset)))
    if unknown:
        raise UserError(f"--rows: unknown row(s) {', '.join(unknown)} (known: {', '.join(rows_for(preset))})")
    from shared_utils.runs import set_threads

    set_threads(a.threads)
    import superrelora.pretrain as pt

    if a.dry_run:  # same code path, tiny sizes: checks that the preset builds and trains (GPU presets on CPU)
        pt.PRESETS[a.preset] = {**preset, "warm": 2, "steps": 2, "batch": 2, "seq": min(preset["seq"], 32),
                                "eval_blocks": 4, "merge_every": 1, "sweep": [2], "seeds": [0]}
        seeds = seeds or [0]
    t0 = time.time()
    records = pt.run_all(a.preset, out_root, None if text_file else data_dir, text_file, rows, seeds, ROOT,
                         a.device, sweep_seeds=sweep_seeds)
    if a.dry_run:
        print(f"[pretrain] dry run of preset {a.preset}: {len(records)} records in {out_root}, no results written")
        return
    import json

    data = json.loads((out_root / "data.json").read_text())
    wall = sum(r.get("wall_s", 0.0) for r in records)
    d = pt.assemble(records, a.preset, "python " + " ".join(sys.argv), wall, data, Path(a.results), out_root)
    print(f"[pretrain] wrote {a.results}/pretrain_table.md ({len(d['rows'])} rows) in {time.time() - t0:.0f} s")
    for note in d.get("notes", [])[:1]:
        print("[pretrain]", note)


if __name__ == "__main__":
    main()
