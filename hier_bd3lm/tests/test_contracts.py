"""Workspace contracts: gpu_check.py (dry run on CPU, and the one-line refusal without CUDA), the benchmark's
EVIDENCE.md-shaped output, and an import graph without cycles (train <-> evaluate).

python -m pytest tests/test_contracts.py -q
"""

import ast
import json
import subprocess
import sys

import pytest
import torch
from conftest import PROJECT


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True)


def test_gpu_check_dry_run_writes_the_json(tmp_path):
    r = run("gpu_check.py", "--out", str(tmp_path / "g.json"), "--dry-run")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((tmp_path / "g.json").read_text())
    assert d["project"] == "hier_bd3lm" and [i["name"] for i in d["items"]] == ["plan_generation_bf16", "train_step_bf16", "eval"]
    assert all(i["ok"] and i["seconds"] >= 0 and i["detail"] for i in d["items"])
    m = d["mfu"]
    assert m["flops"] > 0 and m["seconds"] > 0 and m["peak_flops"] == 989e12
    assert m["value"] == pytest.approx(m["flops"] / m["seconds"] / m["peak_flops"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_without_cuda_is_one_line(tmp_path):
    r = run("gpu_check.py", "--out", str(tmp_path / "g.json"))
    assert r.returncode == 2 and "needs a CUDA GPU" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "g.json").exists()


def test_bench_writes_evidence_shaped_rows(tmp_path):
    r = run("scripts/bench.py", "--out", str(tmp_path / "bench"), "--lengths", "8,8,16", "--block_size", "8",
            "--hidden", "16", "--layers", "1", "--heads", "2", "--vocab", "64", "--batch", "2", "--rounds", "2")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    d = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["method"]: row for row in d["rows"]}
    assert set(rows) == {"hier_bd3lm: 2L BD3 step / AR step", "hier_bd3lm: KV cache speed-up (BD3 sampling)",
                         "hier_bd3lm: KV cache speed-up (AR sampling)"}
    for row in rows.values():
        ratio, limit = row["metrics"]["ratio"], row["metrics"]["limit"]
        assert ratio["ci95"][0] <= ratio["mean"] <= ratio["ci95"][1] and limit["mean"] > 1
        assert (r.returncode == 1) == any("flag" in x for x in rows.values()) or not all(
            x.get("same_tokens", True) for x in rows.values())
    assert rows["hier_bd3lm: 2L BD3 step / AR step"]["metrics"]["limit"]["mean"] == pytest.approx((8 + 48) / (8 + 24))
    assert 0 < rows["hier_bd3lm: 2L BD3 step / AR step"]["metrics"]["mfu"]["mean"] < 1
    assert all(x.get("same_tokens", True) for x in rows.values())


def test_train_and_evaluate_do_not_import_each_other():
    src = PROJECT / "src" / "hier_bd3lm"

    def imports(name):
        tree = ast.parse((src / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "hier_bd3lm.train" not in imports("evaluate")
    assert "hier_bd3lm.evaluate" not in imports("pipeline") and "hier_bd3lm.train" not in imports("pipeline")
