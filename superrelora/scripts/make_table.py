"""Reproduce the README table at CPU scale (make table). Each row runs in its own subprocess.

    python scripts/make_table.py [--scale default|small] [--data ../../shared/data/wikitext2/raw/wiki.test.raw]
    python scripts/make_table.py --row superrelora --scale small      # one row, in this process
"""

import argparse
import datetime
import sys
import time
from pathlib import Path

from shared_utils.errors import cli_main
from superrelora.table import DEFAULT_DATA, ROWS, SCALES, aggregate, machine, run_all, run_row


@cli_main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="default")
    p.add_argument("--data", default=None, help=f"text file or 'embedded' (default: {DEFAULT_DATA} if present)")
    p.add_argument("--out_root", default=None, help="run dirs (default runs/table_<scale>)")
    p.add_argument("--results", default="results")
    p.add_argument("--row", choices=sorted(ROWS), help="run only this row here (used by the driver)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per row (1 helps on a shared machine)")
    p.add_argument("--rows", default=None, help="comma-separated subset of rows")
    args = p.parse_args()
    data = args.data or (DEFAULT_DATA if Path(DEFAULT_DATA).is_file() else "embedded")
    out_root = args.out_root or f"runs/table_{args.scale}"
    if args.row:
        run_row(args.row, args.scale, data, out_root)
        return
    t0 = time.time()
    rows = run_all(args.scale, data, out_root, args.rows.split(",") if args.rows else None, script=__file__,
                   threads=args.threads)
    meta = {"command": "python " + " ".join(sys.argv), "scale": f"{args.scale} {SCALES[args.scale]}",
            "data": data, "model": SCALES[args.scale].get("model_name", "smollm2-135m (embedded SmolLM2-135M-Instruct, GGUF Q4_1 dequantised to fp32)"),
            "machine": machine(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "wall_minutes": round((time.time() - t0) / 60, 1), "threads": args.threads or "torch default"}
    aggregate(rows, meta, args.results, out_root)
    from superrelora.table import evidence_table

    evidence_table(rows, meta, args.results)
    print(f"[table] wrote {args.results}/table.md in {meta['wall_minutes']} min")


if __name__ == "__main__":
    main()
