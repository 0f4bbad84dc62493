#!/usr/bin/env python3
"""Workspace driver behind the root Makefile (stdlib only, runs with any python3 >= 3.10).

    python3 tools/workspace.py test-all   # every default tier, one pytest per env, then the bad-input corpus
    python3 tools/workspace.py demo       # every project's `make smoke`, then one combined table

test-all keeps going after a failure, prints one summary line per project and a final
``N passed, N failed`` line (summed over all projects), and exits non-zero if anything failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ["high_to_low", "superrelora", "llm_trm", "hier_bd3lm", "llm_streamline"]
REPORTS = ROOT / ".reports"
# what a check runs under: the Hub offline (as in .ci/run), no wandb, no GUI backend
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


def _run(cmd: list[str], env: dict | None = None, log: Path | None = None) -> int:
    """Run a command, streaming its output (and teeing it to ``log``)."""
    print(f"$ {' '.join(cmd)}", flush=True)
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        fh = log.open("w") if log else None
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(line)
            if fh:
                fh.write(line)
        sys.stdout.flush()
        if fh:
            fh.close()
        return proc.wait()


def run_group(cmd: list[str], cwd: Path, timeout: float, log: Path, env: dict | None = None) -> int | None:
    """Run ``cmd`` in its own process group with its output in ``log``; on timeout kill the whole group (make's
    children too) and return None. Used by tools/gpu_check.py and tools/bench.py."""
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None


def junit_counts(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    c = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in c:
            c[k] += int(s.get(k, 0))
    return {"passed": c["tests"] - c["failures"] - c["errors"] - c["skipped"],
            "failed": c["failures"] + c["errors"], "skipped": c["skipped"]}


def test_all() -> int:
    REPORTS.mkdir(exist_ok=True)
    # (name, make target dir, make target); root tests run in shared_utils' env
    steps = [("shared_utils", "shared_utils", "test"), ("workspace", ".", "test-root")]
    steps += [(p, p, "test") for p in PROJECTS]
    steps += [("bad_inputs", ".", "test-bad-inputs")]  # runs every project's CLIs, so after their envs exist
    rows = []
    for name, where, target in steps:
        xml = REPORTS / f"{name}.xml"
        xml.unlink(missing_ok=True)
        env = dict(os.environ, PYTEST_ADDOPTS=f"{os.environ.get('PYTEST_ADDOPTS', '')} --junitxml={xml}".strip())
        print(f"\n===== {name}: make {target} =====", flush=True)
        t0 = time.time()
        cmd = ["make", "--no-print-directory", "-C", where, target]
        rc = _run(cmd, env=env, log=REPORTS / f"{name}.log")
        counts = junit_counts(xml)
        if counts is None:  # setup failed or pytest never ran: count the step as one failure
            counts = {"passed": 0, "failed": 1, "skipped": 0, "note": f"did not run tests (see .reports/{name}.log)"}
        elif rc != 0 and counts["failed"] == 0:
            counts["failed"] = 1
            counts["note"] = f"exit code {rc}"
        rows.append((name, counts, time.time() - t0, rc))
    print("\n===== summary =====")
    for name, c, secs, _rc in rows:
        note = f"  ({c['note']})" if "note" in c else ""
        print(f"{name:15s} {c['passed']:4d} passed, {c['failed']:3d} failed, {c['skipped']:3d} skipped  {secs:7.1f}s{note}")
    passed = sum(c["passed"] for _, c, _, _ in rows)
    failed = sum(c["failed"] for _, c, _, _ in rows)
    final = f"{passed} passed, {failed} failed"
    (REPORTS / "summary.txt").write_text(final + "\n")
    print(final, flush=True)
    return 1 if failed else 0


def demo() -> int:
    rows, bad = [], 0
    for p in PROJECTS:
        summary = ROOT / p / "runs" / "smoke" / "summary.json"
        summary.unlink(missing_ok=True)
        print(f"\n===== {p}: make smoke =====", flush=True)
        t0 = time.time()
        rc = _run(["make", "--no-print-directory", "-C", p, "smoke"])
        secs = time.time() - t0
        if rc != 0:
            rows.append((p, "FAILED", f"exit code {rc}", "", secs))
            bad += 1
        elif not summary.exists():
            rows.append((p, "not there yet", "", "", secs))
        else:
            s = json.loads(summary.read_text())
            value = s.get("value")
            value = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            rows.append((p, s.get("what", ""), s.get("metric", ""), value, secs))
    print("\n===== demo =====")
    header = ("project", "what ran", "key metric", "value", "time")
    table = [header] + [(a, b, c, d, f"{e:.0f}s") for a, b, c, d, e in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(5)]
    for i, r in enumerate(table):
        print(" | ".join(str(x).ljust(w) for x, w in zip(r, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"total {sum(r[4] for r in rows):.0f}s")
    return 1 if bad else 0


if __name__ == "__main__":
    cmds = {"test-all": test_all, "demo": demo}
    if len(sys.argv) != 2 or sys.argv[1] not in cmds:
        print(f"usage: {sys.argv[0]} {{{'|'.join(cmds)}}}", file=sys.stderr)
        sys.exit(2)
    sys.exit(cmds[sys.argv[1]]())
