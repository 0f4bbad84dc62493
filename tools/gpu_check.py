#!/usr/bin/env python3
"""`make gpu-check`: everything a GPU user relies on, checked in one command (<= 5 min on one H200).

    python3 tools/gpu_check.py                      # needs CUDA; writes results/gpu_check.json + .md
    python3 tools/gpu_check.py --dry-run            # the same plan on CPU: each project's gpu_check.py --dry-run
    python3 tools/gpu_check.py --only 'gpu_check|deepspeed' --budget 200     # a subset (regex on item names)
    python3 tools/gpu_check.py --python /opt/conda/bin/python    # one CUDA interpreter for every project

Items, cheapest and most informative first, each with its own timeout, all within --budget seconds:
  1. `<project>: gpu_check.py`: one bf16 training step and one evaluation of the project's method on the real
     SmolLM2-135M, through the project's own code, with the step's MFU (issue 11 contract 3)
  2. `<project>: gpu tests`: the project's `gpu` test tier (`pytest -m gpu`), shared_utils' too
  3. `hier_bd3lm: plan generation`: a handful of GSM8K plans with vLLM when it is installed, else the HF backend
     (the reason is recorded)
  4. `accelerate launch` of the training entries that the originals launch with accelerate (one process, bf16):
     llm_streamline LLM loss, llm_trm phase 1; then llm_streamline's own `4gpu.yaml` (DeepSpeed ZeRO-2) when
     `deepspeed` is installed
Without CUDA it prints one line and exits 2 (use --dry-run on CPU). Exit 1 when an item failed or was not reached
within the budget. Stdlib only: each item runs in its project's own .venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from workspace import OFFLINE_ENV, PROJECTS, junit_counts, run_group  # noqa: E402  (tools/ is not a package)

H200_PEAK_TFLOPS = 989.0
PEAK_SOURCE = "H200 bf16 dense 989 TFLOP/s (NVIDIA spec)"
TIMEOUTS = {"gpu_check": 120, "test_gpu": 150, "plans": 150, "accelerate": 180, "deepspeed": 240}
PROBE = r"""
import importlib.util as u, json
out = {m: u.find_spec(m) is not None for m in ("accelerate", "deepspeed", "vllm", "pytest")}
try:
    import torch
    out.update(torch=torch.__version__, cuda=bool(torch.cuda.is_available()), cuda_version=torch.version.cuda)
    if out["cuda"]:
        p = torch.cuda.get_device_properties(0)
        out.update(device=torch.cuda.get_device_name(0), capability=f"{p.major}.{p.minor}",
                   memory_gib=round(p.total_memory / 2**30, 1), device_count=torch.cuda.device_count())
except Exception as exc:
    out.update(torch=None, cuda=False, error=f"{type(exc).__name__}: {exc}")
print(json.dumps(out))
"""


class CheckError(Exception):
    """Bad input or no GPU: one line, exit 2."""


@dataclass
class Item:
    name: str
    kind: str  # gpu_check | test_gpu | plans | accelerate | deepspeed
    project: str
    cmd: list[str] = field(default_factory=list)
    timeout: float = 120.0
    skip: str | None = None  # not run, and that is fine (an optional package is absent, a dry run)
    fail: str | None = None  # cannot run, and that is a failure (no environment, no gpu_check.py, no CUDA torch)
    note: str = ""  # recorded with the result (e.g. why the HF backend stands in for vLLM)
    out: str | None = None  # the file the item writes (gpu_check JSON, junit XML)
    env: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ the plan
def _py(installed: dict, project: str) -> str | None:
    return (installed.get(project) or {}).get("python")


def _blocker(installed: dict, project: str, has_cuda: bool, dry_run: bool, need: str | None = None,
             gpu_only: bool = False) -> tuple:
    """(skip, fail) for an item of ``project``: no env / no CUDA torch fail; ``need`` absent fails too; a GPU-only
    item is skipped in a dry run."""
    if dry_run and gpu_only:
        return "dry run: needs CUDA", None
    info = installed.get(project) or {}
    if not info.get("python"):
        return None, f"no environment: {project}/.venv is missing (make -C {project} setup)"
    if not dry_run and not has_cuda:
        return "no CUDA on this machine", None
    if not dry_run and not info.get("cuda"):
        return None, (f"torch {info.get('torch')} in {project}'s environment has no CUDA "
                      f"(make -C {project} setup TORCH_SPEC=torch on the GPU machine)")
    if need and not info.get(need):
        return None, f"{need} is not installed in {project}'s environment"
    return None, None


def plan(has_cuda: bool, installed: dict, projects: list[str], dry_run: bool = False, out_dir: Path | None = None,
         peak_tflops: float = H200_PEAK_TFLOPS, gsm8k: str = "tests/fixtures/gsm8k_test.jsonl") -> list[Item]:
    """Every item in the order it runs, each with its skip or fail reason when it cannot run.

    ``installed[project]`` = {"python": path | None, "gpu_check": bool, "cuda": bool, "torch": str,
    "accelerate": bool, "deepspeed": bool, "vllm": bool}; "shared_utils" may be there too (its gpu tests).
    """
    out = Path(out_dir or ROOT / "runs" / "gpu_check")
    items: list[Item] = []
    for p in projects:  # 1. one bf16 train step + one eval per project, with MFU
        skip, fail = _blocker(installed, p, has_cuda, dry_run)
        if not fail and not (installed.get(p) or {}).get("gpu_check"):
            fail = f"{p}/gpu_check.py is missing (issue 11, contract 3)"
        cmd = [_py(installed, p) or "python", "gpu_check.py", "--out", str(out / f"{p}.json"),
               "--peak_tflops", f"{peak_tflops:g}"] + (["--dry-run"] if dry_run else [])
        items.append(Item(f"{p}: gpu_check.py", "gpu_check", p, cmd, TIMEOUTS["gpu_check"], skip, fail,
                          out=str(out / f"{p}.json")))
    for p in (["shared_utils"] if "shared_utils" in installed else []) + projects:  # 2. the gpu test tiers
        skip, fail = _blocker(installed, p, has_cuda, dry_run, gpu_only=True)
        xml = str(out / f"{p}_gpu_tests.xml")
        cmd = [_py(installed, p) or "python", "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}"]
        items.append(Item(f"{p}: gpu tests", "test_gpu", p, cmd, TIMEOUTS["test_gpu"], skip, fail, out=xml))
    if "hier_bd3lm" in projects:  # 3. plan generation: vLLM when installed, else HF on the GPU
        skip, fail = _blocker(installed, "hier_bd3lm", has_cuda, dry_run, gpu_only=True)
        backend = "vllm" if installed.get("hier_bd3lm", {}).get("vllm") else "hf"
        note = "vLLM" if backend == "vllm" else "vllm is not installed in hier_bd3lm's environment: HF backend"
        cmd = [_py(installed, "hier_bd3lm") or "python", "scripts/data_prep/generate_gsm8k_plans.py",
               "--backend", backend, "--model", "smollm2-135m", "--split", "test", "--num_examples", "6",
               "--batch_size", "8", "--max_tokens", "96", "--data_path", gsm8k,
               "--output_path", str(out / f"plans_{backend}.json"), "--no_resume"]
        items.append(Item(f"hier_bd3lm: plan generation ({backend})", "plans", "hier_bd3lm", cmd, TIMEOUTS["plans"],
                          skip, fail, note))
    launch = ["-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes", "1"]
    streamline_args = ["llmloss_entry.py", "--model_name", "smollm2-135m", "--data_path", "embedded", "--seq_len", "128",
                       "--train_num_data", "16", "--cosine_num_data", "4", "--num_test_blocks", "2", "--batch_size",
                       "4", "--gradient_accumulation_step", "1"]
    if "llm_streamline" in projects:  # 4. accelerate launch, one process, bf16
        skip, fail = _blocker(installed, "llm_streamline", has_cuda, dry_run, need="accelerate", gpu_only=True)
        cmd = [_py(installed, "llm_streamline") or "python", *launch, "--mixed_precision", "bf16",
               "--dynamo_backend", "no", *streamline_args, "--output_dir", str(out / "streamline_accelerate")]
        items.append(Item("llm_streamline: accelerate launch LLM loss (1 process, bf16)", "accelerate",
                          "llm_streamline", cmd, TIMEOUTS["accelerate"], skip, fail))
    if "llm_trm" in projects:
        skip, fail = _blocker(installed, "llm_trm", has_cuda, dry_run, need="accelerate", gpu_only=True)
        cmd = [_py(installed, "llm_trm") or "python", *launch, "--mixed_precision", "bf16", "--dynamo_backend", "no",
               "-m", "llm_trm.phase1", "--stage", "1a", "--d_compressed", "64", "--num_samples", "64",
               "--max_seq_length", "64", "--num_epochs", "1", "--no_wandb", "--no_torch_compile",
               "--output_dir", str(out / "trm_phase1"), "--cache_dir", str(out / "trm_cache")]
        items.append(Item("llm_trm: accelerate launch phase 1 (1 process, bf16)", "accelerate", "llm_trm", cmd,
                          TIMEOUTS["accelerate"], skip, fail, "torch.compile off to keep the check short"))
    if "llm_streamline" in projects:  # 5. the project's own accelerate + DeepSpeed ZeRO-2 config
        skip, fail = _blocker(installed, "llm_streamline", has_cuda, dry_run, need="accelerate", gpu_only=True)
        if not (skip or fail) and not installed["llm_streamline"].get("deepspeed"):
            skip = "deepspeed is not installed in llm_streamline's environment (pip install deepspeed)"
        cmd = [_py(installed, "llm_streamline") or "python", "-m", "accelerate.commands.launch", "--config_file",
               "4gpu.yaml", "--num_processes", "1", *streamline_args, "--output_dir", str(out / "streamline_zero2")]
        items.append(Item("llm_streamline: DeepSpeed ZeRO-2 (4gpu.yaml, 1 process)", "deepspeed", "llm_streamline",
                          cmd, TIMEOUTS["deepspeed"], skip, fail, "the shipped config with --num_processes 1"))
    return items


# ------------------------------------------------------------------------------------------------ running
def has_nvidia_driver() -> bool:
    """Cheap test before any torch import: an NVIDIA device node or nvidia-smi."""
    return bool(shutil.which("nvidia-smi")) or any(Path("/dev").glob("nvidia[0-9]*"))


def project_python(project: str, override: str | None) -> str | None:
    if override:
        return override
    py = ROOT / project / ".venv" / "bin" / "python"
    return str(py) if py.exists() else None


def probe(python: str, timeout: float = 120) -> dict:
    """torch / CUDA / optional packages as seen by ``python``."""
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError) as exc:
        return {"torch": None, "cuda": False, "error": f"probe failed: {exc}"}


def survey(projects: list[str], python: str | None, run_probe: bool) -> dict:
    """``installed`` for plan(): environments, gpu_check.py files, and (when run_probe) what each env imports."""
    names = ["shared_utils", *projects]
    installed = {p: {"python": project_python(p, python), "gpu_check": (ROOT / p / "gpu_check.py").is_file()}
                 for p in names}
    if run_probe:
        todo = [p for p in names if installed[p]["python"]]
        with ThreadPoolExecutor(max_workers=3) as pool:
            for p, info in zip(todo, pool.map(lambda q: probe(installed[q]["python"]), todo)):
                installed[p].update(info)
    return installed


def _last_line(log: Path) -> str:
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()] if log.exists() else []
    return lines[-1][:300] if lines else ""


def judge(item: Item, rc: int | None, log: Path) -> dict:
    """Result of one finished item: status, detail, and (gpu_check) the project's own items and MFU."""
    res: dict = {"status": "pass" if rc == 0 else "fail", "detail": _last_line(log)}
    if rc is None:
        return {"status": "fail", "detail": f"ran past its {item.timeout:.0f} s timeout; last line: {res['detail']}"}
    if item.kind == "gpu_check":
        try:
            report = json.loads(Path(item.out).read_text())
            subs = report["items"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return {"status": "fail", "detail": f"exit {rc}, no readable {item.out} ({exc}); {res['detail']}"}
        bad = [s.get("name") for s in subs if not s.get("ok")]
        res["status"] = "pass" if rc == 0 and not bad and subs else "fail"
        res["detail"] = "; ".join(f"{s.get('name')}: {'ok' if s.get('ok') else 'FAILED'} {s.get('seconds', 0):.2f}s"
                                  + ("" if s.get("ok") else f" ({str(s.get('detail', ''))[:160]})") for s in subs)
        res["report"] = report
    elif item.kind == "test_gpu":
        counts = junit_counts(Path(item.out))
        if rc == 5:  # pytest: no tests collected
            res.update(status="pass", detail="no tests marked gpu")
        elif counts is not None:
            res["detail"] = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
            if counts["skipped"] and not counts["passed"] and not counts["failed"]:
                res["detail"] += " (every gpu test skipped itself)"
    if res["status"] == "fail" and rc not in (0, None):
        res["detail"] = f"exit {rc}: {res['detail']}"
    return res


def execute(items: list[Item], out_dir: Path, budget: float, env_extra: dict | None = None) -> list[dict]:
    """Run the items in order within ``budget`` seconds; a result dict per item."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = []
    for item in items:
        base = {"name": item.name, "project": item.project, "kind": item.kind, "note": item.note,
                "cmd": " ".join(item.cmd)}
        if item.fail or item.skip:
            results.append({**base, "status": "fail" if item.fail else "skip", "ok": False if item.fail else None,
                            "seconds": 0.0, "detail": item.fail or item.skip})
            continue
        remaining = budget - (time.time() - t0)
        if remaining < 5:
            results.append({**base, "status": "not run", "ok": None, "seconds": 0.0,
                            "detail": f"not reached within the {budget:.0f} s budget (rerun with --only)"})
            continue
        log = out_dir / (re.sub(r"\W+", "_", item.name).strip("_") + ".log")
        env = {**os.environ, **OFFLINE_ENV, **(env_extra or {}), **item.env}
        env.pop("PYTEST_ADDOPTS", None)
        if item.out:  # never judge a file left by an earlier run
            Path(item.out).unlink(missing_ok=True)
        print(f"[{time.time() - t0:5.0f}s] {item.name} ...", flush=True)
        start = time.time()
        rc = run_group(item.cmd, ROOT / item.project, min(item.timeout, remaining), log, env)
        res = judge(item, rc, log)
        res = {**base, **res, "ok": res["status"] == "pass", "seconds": round(time.time() - start, 1),
               "log": str(log.relative_to(ROOT)) if log.is_relative_to(ROOT) else str(log)}
        print(f"        {res['status']} ({res['seconds']:.0f}s) {res['detail'][:200]}", flush=True)
        results.append(res)
    return results


# ------------------------------------------------------------------------------------------------ report
def summarize(results: list[dict], device: dict, args_note: dict, wall_s: float) -> dict:
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "skip", "not run")}
    mfu = {}
    projects = {}
    for r in results:
        rep = r.pop("report", None)
        if rep is not None:
            projects[r["project"]] = rep
            if isinstance(rep.get("mfu"), dict):
                mfu[r["project"]] = rep["mfu"]
    return {"table": "gpu_check", "command": args_note.get("command", "make gpu-check"),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "wall_s": round(wall_s, 1),
            "machine": device.get("device", "no CUDA device"), "device": device, **args_note,
            "summary": ", ".join(f"{v} {k}" for k, v in counts.items()), "counts": counts,
            "items": results, "mfu": mfu, "projects": projects}


def _fmt_mfu(m: dict) -> list[str]:
    val = m.get("value")
    return [f"{m.get('flops', 0):.3g}", f"{m.get('seconds', 0):.4g}", f"{m.get('peak_flops', 0):.3g}",
            f"{val:.3g}" if isinstance(val, (int, float)) else str(val), str(m.get("peak_source", ""))]


def render_md(report: dict) -> str:
    d = report["device"]
    env = (f" torch {d.get('torch')}, CUDA {d.get('cuda_version')}, compute capability {d.get('capability')}, "
           f"{d.get('memory_gib')} GiB." if d.get("capability") else "")
    out = ["# GPU check", "",
           f"`{report['command']}` on {report['machine']} ({report['date']}, {report['wall_s']:.0f} s wall of a "
           f"{report.get('budget_s', 0):.0f} s budget).{env}",
           "", f"**{report['summary']}**", "", "| item | status | seconds | detail |", "|---|---|---|---|"]
    for r in report["items"]:
        detail = str(r.get("detail", "")).replace("|", "\\|")
        if r.get("note"):
            detail += f" ({r['note']})"
        out.append(f"| {r['name']} | {r['status']} | {r.get('seconds', 0):.1f} | {detail} |")
    if report["mfu"]:
        out += ["", "## MFU of one bf16 training step (each project's gpu_check.py)", "",
                "| project | model FLOPs | seconds | peak FLOP/s | MFU | peak used |", "|---|---|---|---|---|---|"]
        out += [f"| {p} | " + " | ".join(_fmt_mfu(m)) + " |" for p, m in report["mfu"].items()]
    out += ["", f"Logs of this run: `{report.get('logs', 'runs/gpu_check')}/` (not committed)."]
    return "\n".join(out) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="report prefix (.json and .md); default results/gpu_check, "
                                                "runs/gpu_check_dry/gpu_check with --dry-run")
    p.add_argument("--dry-run", action="store_true", help="run the plan on CPU: each project's gpu_check.py "
                                                          "--dry-run (tiny models); GPU-only items are skipped")
    p.add_argument("--budget", type=float, default=300, help="seconds for all items (default 300)")
    p.add_argument("--peak_tflops", type=float, default=H200_PEAK_TFLOPS,
                   help="the GPU's dense bf16 peak for MFU (default 989, H200 spec)")
    p.add_argument("--only", default=None, help="regex: run only the items whose name matches")
    p.add_argument("--projects", nargs="+", default=PROJECTS)
    p.add_argument("--python", default=None, help="one interpreter for every project instead of <project>/.venv "
                                                  "(its src/ and shared_utils/src go on PYTHONPATH)")
    args = p.parse_args(argv)
    if args.budget <= 0 or args.peak_tflops <= 0:
        raise CheckError("--budget and --peak_tflops must be > 0")
    unknown = [x for x in args.projects if x not in PROJECTS]
    if unknown:
        raise CheckError(f"unknown project(s) {unknown}; choose from {PROJECTS}")
    if args.only:
        try:
            re.compile(args.only)
        except re.error as exc:
            raise CheckError(f"--only {args.only!r} is not a regular expression ({exc})") from None
    if args.python and not shutil.which(args.python):
        raise CheckError(f"--python {args.python}: not found")
    args.out = Path(args.out or ("runs/gpu_check_dry/gpu_check" if args.dry_run else "results/gpu_check"))
    if not args.out.is_absolute():
        args.out = ROOT / args.out
    if args.out.with_suffix(".json").is_dir() or any(q.is_file() for q in args.out.parents):
        raise CheckError(f"--out {args.out}: is a directory or lies under a file")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        if not args.dry_run and not has_nvidia_driver():
            raise CheckError("make gpu-check needs a CUDA GPU (no NVIDIA driver on this machine); "
                             "`python3 tools/gpu_check.py --dry-run` runs the plan on CPU")
        installed = survey(args.projects, args.python, run_probe=not args.dry_run)
        cuda_envs = [p for p, v in installed.items() if v.get("cuda")]
        if not args.dry_run and not cuda_envs:
            raise CheckError("make gpu-check needs a CUDA GPU (torch.cuda.is_available() is False in every project "
                             "environment); `python3 tools/gpu_check.py --dry-run` runs the plan on CPU")
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    work = ROOT / "runs" / ("gpu_check_dry" if args.dry_run else "gpu_check")
    items = plan(bool(cuda_envs), installed, args.projects, args.dry_run, work, args.peak_tflops)
    if args.only:
        items = [i for i in items if re.search(args.only, i.name)]
    env_extra = {}
    if args.python:
        env_extra["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared_utils" / "src")] +
                                                  [str(ROOT / p / "src") for p in args.projects])
    device = {k: v for k, v in installed[cuda_envs[0]].items() if k != "python"} if cuda_envs else \
        {"device": "CPU (dry run)"}
    note = {"command": "make gpu-check" + (" --dry-run" if args.dry_run else ""), "budget_s": args.budget,
            "logs": str(work.relative_to(ROOT)),
            "peak_tflops": args.peak_tflops,
            "peak_source": PEAK_SOURCE if args.peak_tflops == H200_PEAK_TFLOPS else f"--peak_tflops {args.peak_tflops}"}
    if args.only:
        note["command"] += f" --only '{args.only}'"
    if "H200" not in str(device.get("device", "")) and args.peak_tflops == H200_PEAK_TFLOPS and not args.dry_run:
        note["peak_source"] += f"; the device is {device.get('device')}, pass its own --peak_tflops"
    results = execute(items, work, args.budget, env_extra)
    report = summarize(results, device, note, time.time() - t0)
    _atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    _atomic_write(args.out.with_suffix(".md"), render_md(report))
    print(f"\n{report['summary']}; wrote {args.out.with_suffix('.json')} and .md", flush=True)
    return 1 if report["counts"]["fail"] or report["counts"]["not run"] else 0


if __name__ == "__main__":
    sys.exit(main())
