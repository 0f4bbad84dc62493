"""tools/gpu_check.py (`make gpu-check`): the plan (which items, what is skipped or failed and why), judging item
outputs, the budget, the report, and the no-GPU exit -- all on CPU. The slow test runs the real --dry-run.

    shared_utils/.venv/bin/python -m pytest tests/test_tools_gpu_check.py -q            (fast tier)
    shared_utils/.venv/bin/python -m pytest tests/test_tools_gpu_check.py -q -m slow    (dry run of every project)
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("_tools_gpu_check", ROOT / "tools" / "gpu_check.py")
gc = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look the module up
spec.loader.exec_module(gc)  # type: ignore[union-attr]
PROJECTS = gc.PROJECTS


def env(**over) -> dict:
    base = {"python": "/venv/bin/python", "gpu_check": True, "cuda": True, "torch": "2.13.0+cu128",
            "accelerate": True, "deepspeed": False, "vllm": False}
    return {**base, **over}


def full(**per_project) -> dict:
    installed = {p: env() for p in ["shared_utils", *PROJECTS]}
    installed.update(per_project)
    return installed


def by_name(items) -> dict:
    return {i.name: i for i in items}


def test_plan_order_and_contents_on_a_cuda_machine(tmp_path):
    items = gc.plan(True, full(), PROJECTS, out_dir=tmp_path, peak_tflops=989)
    names = [i.name for i in items]
    assert names[:5] == [f"{p}: gpu_check.py" for p in PROJECTS]  # the cheapest, most informative first
    assert names[5:11] == [f"{p}: gpu tests" for p in ["shared_utils", *PROJECTS]]
    assert names[-1].startswith("llm_streamline: DeepSpeed ZeRO-2")
    assert not [i.name for i in items if i.fail]
    first = items[0]
    assert first.cmd[1:] == ["gpu_check.py", "--out", str(tmp_path / f"{PROJECTS[0]}.json"), "--peak_tflops", "989"]
    plans = by_name(items)["hier_bd3lm: plan generation (hf)"]
    assert plans.skip is None and "vllm is not installed" in plans.note
    assert plans.cmd[plans.cmd.index("--backend") + 1] == "hf" and "--num_examples" in plans.cmd
    ds = by_name(items)["llm_streamline: DeepSpeed ZeRO-2 (4gpu.yaml, 1 process)"]
    assert "deepspeed is not installed" in ds.skip and "4gpu.yaml" in ds.cmd
    acc = by_name(items)["llm_streamline: accelerate launch LLM loss (1 process, bf16)"]
    assert acc.skip is None and acc.cmd[1:3] == ["-m", "accelerate.commands.launch"] and "bf16" in acc.cmd
    assert all(i.timeout > 0 for i in items)


def test_plan_uses_vllm_and_deepspeed_when_installed(tmp_path):
    installed = full(hier_bd3lm=env(vllm=True), llm_streamline=env(deepspeed=True))
    items = by_name(gc.plan(True, installed, PROJECTS, out_dir=tmp_path))
    assert items["hier_bd3lm: plan generation (vllm)"].skip is None
    assert items["llm_streamline: DeepSpeed ZeRO-2 (4gpu.yaml, 1 process)"].skip is None


def test_plan_failures_name_their_cause(tmp_path):
    installed = full(superrelora=env(python=None), llm_trm=env(gpu_check=False),
                     high_to_low=env(cuda=False, torch="2.13.0+cpu"), llm_streamline=env(accelerate=False))
    items = by_name(gc.plan(True, installed, PROJECTS, out_dir=tmp_path))
    assert "superrelora/.venv is missing" in items["superrelora: gpu_check.py"].fail
    assert "superrelora/.venv is missing" in items["superrelora: gpu tests"].fail
    assert "gpu_check.py is missing" in items["llm_trm: gpu_check.py"].fail
    assert items["llm_trm: gpu tests"].fail is None  # only the missing file fails, not the whole project
    assert "has no CUDA" in items["high_to_low: gpu_check.py"].fail and "TORCH_SPEC" in items["high_to_low: gpu tests"].fail
    assert "accelerate is not installed" in items["llm_streamline: accelerate launch LLM loss (1 process, bf16)"].fail


def test_plan_dry_run_and_no_cuda(tmp_path):
    installed = full(**{p: env(cuda=False) for p in ["shared_utils", *PROJECTS]})
    dry = gc.plan(False, installed, PROJECTS, dry_run=True, out_dir=tmp_path)
    runnable = [i for i in dry if not (i.skip or i.fail)]
    assert [i.name for i in runnable] == [f"{p}: gpu_check.py" for p in PROJECTS]
    assert all(i.cmd[-1] == "--dry-run" for i in runnable)
    assert all(i.skip == "dry run: needs CUDA" for i in dry if i not in runnable)
    no_cuda = gc.plan(False, installed, PROJECTS, out_dir=tmp_path)
    assert all(i.skip == "no CUDA on this machine" and not i.fail for i in no_cuda)


def test_plan_subset_of_projects(tmp_path):
    items = gc.plan(True, full(), ["llm_trm"], out_dir=tmp_path)
    assert {i.project for i in items} == {"llm_trm", "shared_utils"}
    assert not any("plan generation" in i.name or "DeepSpeed" in i.name for i in items)


def _gpu_check_report(ok: bool = True) -> dict:
    return {"project": "p", "device": "NVIDIA H200",
            "items": [{"name": "train_step_bf16", "ok": True, "seconds": 0.2, "detail": "loss 3.1"},
                      {"name": "eval", "ok": ok, "seconds": 0.1, "detail": "ppl 20" if ok else "boom"}],
            "mfu": {"flops": 1e12, "seconds": 0.01, "peak_flops": 9.89e14, "value": 0.101, "peak_source": gc.PEAK_SOURCE}}


def test_judge_gpu_check_and_test_tier(tmp_path):
    out, log = tmp_path / "p.json", tmp_path / "log"
    log.write_text("starting\nlast words\n")
    item = gc.Item("p: gpu_check.py", "gpu_check", "p", out=str(out))
    assert gc.judge(item, 0, log)["status"] == "fail"  # exit 0 but no report: not a pass
    out.write_text(json.dumps(_gpu_check_report()))
    res = gc.judge(item, 0, log)
    assert res["status"] == "pass" and "train_step_bf16: ok" in res["detail"] and res["report"]["mfu"]["value"] == 0.101
    out.write_text(json.dumps(_gpu_check_report(ok=False)))
    res = gc.judge(item, 1, log)
    assert res["status"] == "fail" and "eval: FAILED" in res["detail"] and "boom" in res["detail"]
    timed_out = gc.judge(item, None, log)
    assert timed_out["status"] == "fail" and "timeout" in timed_out["detail"] and "last words" in timed_out["detail"]

    xml = tmp_path / "t.xml"
    tier = gc.Item("p: gpu tests", "test_gpu", "p", out=str(xml))
    assert gc.judge(tier, 5, log) == {"status": "pass", "detail": "no tests marked gpu"}
    xml.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1"/></testsuites>')
    res = gc.judge(tier, 1, log)
    assert res["status"] == "fail" and "1 passed, 1 failed, 1 skipped" in res["detail"]


def test_execute_runs_in_order_within_budget(tmp_path):
    report = tmp_path / "p.json"
    write = f"import json; open({str(report)!r}, 'w').write(json.dumps({_gpu_check_report()!r}))"
    items = [gc.Item("a: gpu_check.py", "gpu_check", ".", [sys.executable, "-c", write], 30, out=str(report)),
             gc.Item("b: optional", "deepspeed", ".", [sys.executable, "-c", "pass"], 30, skip="deepspeed absent"),
             gc.Item("c: broken", "accelerate", ".", [sys.executable, "-c", "raise SystemExit(3)"], 30),
             gc.Item("d: slow", "accelerate", ".", [sys.executable, "-c", "import time; time.sleep(30)"], 0.5),
             gc.Item("e: missing", "gpu_check", ".", fail="no environment")]
    results = gc.execute(items, tmp_path / "work", budget=60)
    status = {r["name"]: r["status"] for r in results}
    assert status == {"a: gpu_check.py": "pass", "b: optional": "skip", "c: broken": "fail", "d: slow": "fail",
                      "e: missing": "fail"}
    assert "exit 3" in results[2]["detail"] and "timeout" in results[3]["detail"]
    late = gc.execute([gc.Item("z", "accelerate", ".", [sys.executable, "-c", "pass"], 30)], tmp_path / "w2", budget=1)
    assert late[0]["status"] == "not run" and "budget" in late[0]["detail"]
    report_dict = gc.summarize(results, {"device": "NVIDIA H200", "torch": "2.13", "cuda_version": "12.8",
                                         "capability": "9.0", "memory_gib": 139.8}, {"budget_s": 60}, 12.0)
    assert report_dict["counts"] == {"pass": 1, "fail": 3, "skip": 1, "not run": 0}
    assert report_dict["mfu"] == {".": _gpu_check_report()["mfu"]} and "report" not in results[0]
    md = gc.render_md(report_dict)
    assert "NVIDIA H200" in md and "| a: gpu_check.py | pass |" in md and "0.101" in md and gc.PEAK_SOURCE in md


def test_no_gpu_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gc, "has_nvidia_driver", lambda: False)
    assert gc.main(["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: make gpu-check needs a CUDA GPU")
    monkeypatch.setattr(gc, "has_nvidia_driver", lambda: True)  # a driver, but no env has CUDA torch
    monkeypatch.setattr(gc, "survey", lambda *a, **k: {p: env(cuda=False) for p in ["shared_utils", *PROJECTS]})
    assert gc.main(["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.cuda.is_available() is False" in err[0]
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv, expect", [(["--budget", "0"], "must be > 0"), (["--projects", "x"], "unknown project"),
                                          (["--only", "("], "not a regular expression"),
                                          (["--python", "/no/such/python"], "not found"),
                                          (["--out", "README.md/r"], "under a file")])
def test_bad_flags(argv, expect, capsys):
    assert gc.main(argv + ["--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0]


@pytest.mark.slow
def test_dry_run_of_every_project(tmp_path):
    """The real thing on CPU: each project's gpu_check.py --dry-run through the runner (needs the project envs)."""
    rc = gc.main(["--dry-run", "--out", str(tmp_path / "gc")])
    report = json.loads((tmp_path / "gc.json").read_text())
    checks = [r for r in report["items"] if r["kind"] == "gpu_check"]
    assert [r["project"] for r in checks] == PROJECTS
    assert all(r["status"] == "pass" for r in checks), [(r["name"], r["detail"]) for r in checks if r["status"] != "pass"]
    assert all(r["status"] == "skip" for r in report["items"] if r["kind"] != "gpu_check")
    assert set(report["mfu"]) == set(PROJECTS) and rc == 0
