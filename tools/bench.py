#!/usr/bin/env python3
"""`make bench`: every project's benchmark, merged into one table (results/bench.json + .md, BENCHMARKS.md).

    shared_utils/.venv/bin/python tools/bench.py                 # measure the matmul peaks, run every `make bench`
    shared_utils/.venv/bin/python tools/bench.py --merge-only    # merge the projects' committed results/bench.json
    shared_utils/.venv/bin/python tools/bench.py --projects llm_trm superrelora --timeout 240

Each project's `make bench` writes <project>/results/bench.json in the EVIDENCE.md shape: rows named
`<project>: <setting>` with metric `ratio` (the judged figure: median of interleaved repeats after warm-up, with
its 95% interval), `limit` (what the ratio is judged against, mean only) and `mfu` (achieved FLOP/s of the
training step over the matmul peak that project measured in the same run), and `"flag": "beyond limit"` on a row
whose ratio interval lies entirely beyond its limit. This script runs them one after the other (each with its
own timeout, all within --budget), copies their rows, comparisons and verdicts into one table, and lists the
flagged rows in the verdict. A project without a fresh, well-formed bench.json gets a row that says why, with
no number. Exit status: 0 when every project wrote its table and no row is flagged, else 1 (the table is
written either way).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from workspace import PROJECTS, run_group  # noqa: E402  (tools/ is not a package)

BEYOND = "beyond limit"
METRICS = ("ratio", "limit", "mfu")


class BenchError(Exception):
    """Bad command-line input: one line, exit 2."""


# ------------------------------------------------------------------------------------------------ merging
def missing_row(project: str, reason: str) -> dict:
    """A row that says why a project has no benchmark figure (mean None: explicitly absent, never a number)."""
    return {"method": f"{project}: (no benchmark)", "metrics": {"ratio": {"mean": None}}, "missing": reason}


def _prefixed(project: str, name: str) -> str:
    return name if str(name).startswith(f"{project}: ") else f"{project}: {name}"


def read_project_bench(project: str, path: Path, not_before: float | None = None) -> tuple[dict | None, str]:
    """The project's bench dict, or None and the reason it cannot be used."""
    if not path.is_file():
        return None, f"no {project}/results/bench.json (does `make -C {project} bench` exist and finish?)"
    if not_before is not None and path.stat().st_mtime < not_before:
        return None, f"{project}/results/bench.json was not rewritten by this run (stale file from an earlier run)"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{project}/results/bench.json is not readable JSON ({exc})"
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        return None, f"{project}/results/bench.json has no EVIDENCE.md rows list (older format?)"
    return data, ""


def project_rows(project: str, data: dict) -> tuple[list[dict], list[dict], list[str]]:
    """Rows and comparisons of one project's bench dict, names prefixed `<project>: `, plus problems found."""
    rows, problems = [], []
    for r in data["rows"]:
        if not isinstance(r, dict) or not isinstance(r.get("metrics"), dict):
            problems.append(f"{project}: a row without metrics: {r!r:.80}")
            continue
        row = {**r, "method": _prefixed(project, r.get("method", "?")), "metrics": dict(r["metrics"])}
        for k, m in row["metrics"].items():
            mean = m.get("mean") if isinstance(m, dict) else None
            if k == "mfu" and isinstance(mean, (int, float)) and mean > 1:
                problems.append(f"{row['method']}: mfu {mean:.3g} > 1, above the matmul peak it is measured "
                                "against (a FLOP count or timing problem)")
            if k != "limit" and mean is not None and not m.get("ci95"):  # EVIDENCE.md: no number without interval
                row["metrics"][k] = {"mean": None, "without_interval": mean}
                problems.append(f"{row['method']}: {k} has no 95% interval; shown as absent "
                                f"({mean:.4g} in {project}/results/bench.json)")
        ratio, limit = row["metrics"].get("ratio"), row["metrics"].get("limit")
        if ratio is not None and ratio.get("mean") is not None and limit is None:
            problems.append(f"{row['method']}: ratio without the limit it is judged against")
        rows.append(row)
    comps = [{**c, "a": _prefixed(project, c.get("a", "?")), "b": _prefixed(project, c.get("b", "?"))}
             for c in data.get("comparisons") or [] if isinstance(c, dict)]
    return rows, comps, problems


def merge(results: dict[str, dict], peaks: dict | None = None) -> dict:
    """One EVIDENCE.md table from per-project outcomes.

    ``results[project]`` = {"data": dict | None, "reason": str, "rc": int | None, "seconds": float | None}.
    """
    rows, comps, notes, problems, flagged, missing = [], [], [], [], [], []
    for project, res in results.items():
        data = res.get("data")
        if data is None:
            rows.append(missing_row(project, res.get("reason") or "not run"))
            missing.append(project)
            continue
        prow, pcomp, probs = project_rows(project, data)
        rows += prow
        comps += pcomp
        problems += probs
        flagged += [r["method"] for r in prow if r.get("flag") == BEYOND]
        how = f"`{data.get('command', 'make bench')}` on {data.get('machine', '?')}, {data.get('date', '?')}"
        if res.get("seconds") is not None:
            how += f", {res['seconds']:.0f} s"
        if res.get("rc"):
            how += f", exit {res['rc']}"
        notes.append(f"{project}: {how}. Its verdict: {data.get('verdict', '(none)')}")
        notes += [f"{project}: {n}" for n in data.get("notes") or []]
    if flagged:
        verdict = (f"{len(flagged)} row(s) flagged: ratio interval entirely beyond its physical limit, a measurement "
                   f"problem until explained, not a result: {', '.join(flagged)}")
    else:
        judged = sum(1 for r in rows if (r["metrics"].get("ratio") or {}).get("mean") is not None)
        verdict = (f"none of the {judged} measured ratio intervals lies beyond its physical limit" if judged
                   else "no ratio was measured")
    if missing:
        verdict += f"; no benchmark from {', '.join(missing)} (see their rows)"
    if problems:
        verdict += f"; {len(problems)} problem(s) in the projects' files (see the notes)"
    notes += [f"problem: {p}" for p in problems]
    out = {"rows": rows, "comparisons": comps, "verdict": verdict, "notes": notes,
           "flagged": flagged, "missing": missing}
    if peaks:
        out["matmul_peak_flops"] = peaks
    return out


# ------------------------------------------------------------------------------------------------ rendering
def _num(v) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4 or a < 1e-3:
        return f"{v:.3g}"
    return f"{v:.3f}" if a < 10 else f"{v:.2f}" if a < 100 else f"{v:.1f}"


def _cell(m: dict | None) -> str:
    if not m:
        return ""
    if m.get("mean") is None:
        return "no interval (see notes)" if "without_interval" in m else "absent"
    ci = m.get("ci95")
    return f"{_num(m['mean'])} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(m["mean"])


def benchmarks_md(table: dict) -> str:
    """BENCHMARKS.md: per project, ratio with its interval, limit, mfu, flag; then the verdict and notes."""
    out = ["# Benchmarks", "",
           f"Written by `{table['command']}` ({table['date']}, {table['wall_s']:.0f} s wall; machine: "
           f"{table['machine']}). "
           "Every ratio is a median of interleaved repeats after warm-up with its bootstrap 95% interval; `limit` "
           "is the physical or goal limit it is judged against; `mfu` is the training step's achieved FLOP/s over "
           "the matmul peak the project measured in the same run. Full data: `results/bench.json`.", ""]
    peaks = table.get("matmul_peak_flops")
    if peaks:
        out += [f"Matmul peak measured at the start of this run ({peaks.get('note', '')}): "
                + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items() if isinstance(v, (int, float))),
                ""]
    by_project: dict[str, list[dict]] = {}
    for r in table["rows"]:
        by_project.setdefault(r["method"].split(": ", 1)[0], []).append(r)
    for project, rows in by_project.items():
        out += [f"## {project}", "", "| setting | ratio [95% CI] | limit | mfu [95% CI] | flag |", "|---|---|---|---|---|"]
        for r in rows:
            m = r.get("metrics", {})
            setting = r["method"].split(": ", 1)[1]
            flag = r.get("flag") or (f"missing: {r['missing']}" if r.get("missing") else "")
            out.append(f"| {setting} | {_cell(m.get('ratio'))} | {_cell(m.get('limit'))} | {_cell(m.get('mfu'))} "
                       f"| {flag} |")
        out.append("")
    out += ["## Verdict", "", table["verdict"], ""]
    if table.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in table["notes"]] + [""]
    return "\n".join(out)


def write_outputs(table: dict, out_prefix: Path, md_path: Path) -> None:
    from shared_utils.runs import atomic_write_text
    from shared_utils.stats import render_markdown

    atomic_write_text(out_prefix.with_suffix(".json"), json.dumps(table, indent=2) + "\n")
    atomic_write_text(out_prefix.with_suffix(".md"), render_markdown(table))
    atomic_write_text(md_path, benchmarks_md(table))


# ------------------------------------------------------------------------------------------------ running
def measure_peaks(threads: int = 1) -> dict:
    """fp32 and bf16 matmul FLOP/s of this machine now (shared_utils.bench.matmul_peak_flops, 1024^3, best of 5)."""
    import torch

    from shared_utils.bench import matmul_peak_flops

    torch.set_num_threads(threads)
    return {"fp32": matmul_peak_flops(torch.float32), "bf16": matmul_peak_flops(torch.bfloat16),
            "note": f"n=1024, best of 5 after 1 warm-up, {threads} torch thread(s), torch {torch.__version__}"}


def run_project(project: str, timeout: float, log_dir: Path) -> dict:
    """`make -C <project> bench` with a timeout; its bench.json must be newer than the start of the run."""
    log = log_dir / f"{project}.log"
    makefile = (ROOT / project / "Makefile").read_text()
    if not any(line.startswith("bench:") for line in makefile.splitlines()):
        return {"data": None, "reason": f"{project}/Makefile has no `bench` target", "rc": None, "seconds": None}
    t0 = time.time()
    print(f"\n===== {project}: make bench (timeout {timeout:.0f} s, log {log.relative_to(ROOT)}) =====", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1")
    rc = run_group(["make", "--no-print-directory", "-C", project, "bench"], ROOT, timeout, log, env)
    secs = time.time() - t0
    data, reason = read_project_bench(project, ROOT / project / "results" / "bench.json", not_before=t0)
    if rc is None:
        data, reason = None, f"`make bench` ran past its {timeout:.0f} s timeout (log {log.relative_to(ROOT)})"
    elif data is None and rc != 0:
        reason = f"`make bench` exited {rc} (log {log.relative_to(ROOT)}); {reason}"
    print(f"{project}: exit {rc}, {secs:.0f} s" + (f", {reason}" if reason else ""), flush=True)
    return {"data": data, "reason": reason, "rc": rc, "seconds": secs}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--projects", nargs="+", default=PROJECTS, help="subset (default: all five)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per project's `make bench` (default 300)")
    p.add_argument("--budget", type=float, default=1200, help="seconds for the whole run; projects not started "
                                                              "by then get a 'not run' row (default 1200)")
    p.add_argument("--merge-only", action="store_true",
                   help="do not run anything: merge each project's existing results/bench.json as it is")
    p.add_argument("--out", default="results/bench", help="output prefix (.json and .md); default results/bench")
    p.add_argument("--md", default="BENCHMARKS.md", help="the per-project summary (default BENCHMARKS.md)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the matmul peak (default 1)")
    args = p.parse_args(argv)
    unknown = [x for x in args.projects if x not in PROJECTS]
    if unknown:
        raise BenchError(f"unknown project(s) {unknown}; choose from {PROJECTS}")
    if args.timeout <= 0 or args.budget <= 0 or args.threads < 1:
        raise BenchError("--timeout and --budget must be > 0 and --threads >= 1")
    for flag, path in (("--out", Path(args.out).with_suffix(".json")), ("--md", Path(args.md))):
        if (ROOT / path).is_dir() or any(p.is_file() for p in (ROOT / path).parents):
            raise BenchError(f"{flag} {path}: is a directory or lies under a file")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    log_dir = ROOT / "runs" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    peaks = None if args.merge_only else measure_peaks(args.threads)
    results = {}
    for project in args.projects:
        if args.merge_only:
            data, reason = read_project_bench(project, ROOT / project / "results" / "bench.json")
            results[project] = {"data": data, "reason": reason, "rc": None, "seconds": None}
        elif time.time() - t0 > args.budget:
            results[project] = {"data": None, "reason": f"not run: the {args.budget:.0f} s budget was spent",
                                "rc": None, "seconds": None}
        else:
            remaining = args.budget - (time.time() - t0)
            results[project] = run_project(project, min(args.timeout, max(remaining, 1.0)), log_dir)
    merged = merge(results, peaks)
    command = "make bench" if not args.merge_only else "python tools/bench.py --merge-only"
    if args.projects != PROJECTS:
        command += " (" + " ".join(args.projects) + ")"
    if args.merge_only:  # nothing ran here: each project's machine is in the notes
        machine = "as recorded by each project (merged, not re-run)"
    else:
        from shared_utils.stats import machine_name

        machine = machine_name()
    table = {"table": "bench", "command": command, "preset": "cpu", "machine": machine,
             "date": dt.date.today().isoformat(), "wall_s": round(time.time() - t0, 1), **merged}
    write_outputs(table, ROOT / args.out, ROOT / args.md)
    print(f"\nwrote {args.out}.json, {args.out}.md, {args.md}: {table['verdict']}", flush=True)
    return 1 if (merged["flagged"] or merged["missing"]) else 0


if __name__ == "__main__":
    sys.exit(main())
