"""tools/bench.py (`make bench`): merging the projects' bench.json files, with fake project outputs.

    shared_utils/.venv/bin/python -m pytest tests/test_tools_bench.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


bench = _load("bench")


def fake_bench(project: str, flag: bool = False, prefixed: bool = True) -> dict:
    name = f"{project}: g=4" if prefixed else "g=4"
    ratio = {"mean": 1.9, "ci95": [1.8, 2.0], "n": 20, "seeds": 1, "unit": "repeat (ratio of medians)"}
    row = {"method": name, "metrics": {"ratio": ratio, "limit": {"mean": 1.5 if flag else 2.5},
                                       "mfu": {"mean": 0.21, "ci95": [0.2, 0.22], "n": 20, "seeds": 1,
                                               "unit": "repeat (median)"}}}
    if flag:
        row["flag"] = bench.BEYOND
    return {"table": "bench", "command": "make bench", "machine": "2-core CPU", "date": "2026-12-02",
            "rows": [row, {"method": "baseline", "metrics": {"mfu": row["metrics"]["mfu"]}}],
            "comparisons": [{"a": "g=4", "b": "baseline", "metric": "mfu", "diff": 0.0, "ci95": [-0.01, 0.01],
                             "paired": True}],
            "verdict": "within limit", "notes": ["g is the group size"]}


def evidence_problems(table: dict) -> list[str]:
    """The EVIDENCE.md rules that ../shared/tools/check_evidence.py applies (kept here: tests may not need ../shared)."""
    out = [f"missing {k}" for k in ("table", "command", "machine", "date", "rows", "verdict") if not table.get(k)]
    for r in table["rows"]:
        for k, m in r["metrics"].items():
            if m.get("mean") is None:
                continue
            ci = m.get("ci95")
            if ci is None and k != "limit":
                out.append(f"{r['method']}.{k}: no ci95")
            if ci is not None and not (ci[0] <= m["mean"] <= ci[1] and m.get("n")):
                out.append(f"{r['method']}.{k}: bad ci95/n")
    if any(w in table["verdict"].lower() for w in ("beats", "better than", "outperforms")):
        out.append("verdict claims a win")
    return out


def test_merge_prefixes_rows_and_comparisons_and_lists_flags():
    merged = bench.merge({"high_to_low": {"data": fake_bench("high_to_low", prefixed=False), "rc": 0, "seconds": 3},
                          "llm_trm": {"data": fake_bench("llm_trm", flag=True), "rc": 1, "seconds": 4}})
    methods = [r["method"] for r in merged["rows"]]
    assert methods == ["high_to_low: g=4", "high_to_low: baseline", "llm_trm: g=4", "llm_trm: baseline"]
    assert {(c["a"], c["b"]) for c in merged["comparisons"]} == {("high_to_low: g=4", "high_to_low: baseline"),
                                                                  ("llm_trm: g=4", "llm_trm: baseline")}
    assert merged["flagged"] == ["llm_trm: g=4"] and merged["missing"] == []
    assert "llm_trm: g=4" in merged["verdict"] and "beyond" in merged["verdict"]
    assert any("exit 1" in n for n in merged["notes"]) and any("g is the group size" in n for n in merged["notes"])


def test_merge_missing_project_is_a_row_without_a_number():
    merged = bench.merge({"hier_bd3lm": {"data": None, "reason": "no bench target"},
                          "superrelora": {"data": fake_bench("superrelora"), "rc": 0}})
    row = merged["rows"][0]
    assert row["method"] == "hier_bd3lm: (no benchmark)" and row["metrics"]["ratio"]["mean"] is None
    assert row["missing"] == "no bench target"
    assert merged["missing"] == ["hier_bd3lm"] and merged["flagged"] == []
    assert "none of the 1 measured ratio intervals" in merged["verdict"] and "hier_bd3lm" in merged["verdict"]


def test_other_flags_are_shown_but_not_counted_as_beyond_limit(tmp_path, monkeypatch):
    data = fake_bench("llm_streamline")
    data["rows"][0]["flag"] = "above FLOP ceiling"
    merged = bench.merge({"llm_streamline": {"data": data}})
    assert merged["flagged"] == [] and not any(n.startswith("problem") for n in merged["notes"])
    table = {"command": "make bench", "machine": "m", "date": "d", "wall_s": 1.0, **merged}
    assert "| g=4 | 1.900 [1.800, 2.000] | 2.500 | 0.210 [0.200, 0.220] | above FLOP ceiling |" in bench.benchmarks_md(table)


def test_metric_without_interval_is_absent_and_mfu_above_one_is_a_problem():
    data = fake_bench("llm_trm")
    data["rows"][0]["metrics"]["mfu"] = {"mean": 1.16}
    merged = bench.merge({"llm_trm": {"data": data}})
    assert merged["rows"][0]["metrics"]["mfu"] == {"mean": None, "without_interval": 1.16}
    assert data["rows"][0]["metrics"]["mfu"] == {"mean": 1.16}  # the project's dict is not modified
    problems = [n for n in merged["notes"] if n.startswith("problem")]
    assert any("no 95% interval" in n for n in problems) and any("mfu 1.16 > 1" in n for n in problems)
    assert "2 problem(s)" in merged["verdict"]
    assert evidence_problems({"table": "t", "command": "c", "machine": "m", "date": "d", **merged}) == []


def test_merge_reports_a_ratio_without_limit():
    data = fake_bench("llm_trm")
    del data["rows"][0]["metrics"]["limit"]
    merged = bench.merge({"llm_trm": {"data": data}})
    assert any("without the limit" in n for n in merged["notes"])


def test_read_project_bench_reasons(tmp_path):
    path = tmp_path / "bench.json"
    assert bench.read_project_bench("p", path)[0] is None
    path.write_text("{oops")
    assert "not readable JSON" in bench.read_project_bench("p", path)[1]
    path.write_text(json.dumps({"speed": {"speedup": 1.5}}))
    assert "no EVIDENCE.md rows" in bench.read_project_bench("p", path)[1]
    path.write_text(json.dumps(fake_bench("p")))
    assert bench.read_project_bench("p", path)[0]["rows"]
    os.utime(path, (time.time() - 100, time.time() - 100))
    data, reason = bench.read_project_bench("p", path, not_before=time.time() - 10)
    assert data is None and "stale" in reason


def _fake_workspace(tmp_path, monkeypatch, projects: dict[str, dict | None]):
    for p in bench.PROJECTS:
        (tmp_path / p / "results").mkdir(parents=True)
        (tmp_path / p / "Makefile").write_text("bench:\n\ttrue\n")
        if projects.get(p) is not None:
            (tmp_path / p / "results" / "bench.json").write_text(json.dumps(projects[p]))
    monkeypatch.setattr(bench, "ROOT", tmp_path)


def test_main_merge_only_writes_evidence_table_and_benchmarks_md(tmp_path, monkeypatch):
    _fake_workspace(tmp_path, monkeypatch, {p: fake_bench(p) for p in bench.PROJECTS[:4]})
    rc = bench.main(["--merge-only"])
    assert rc == 1  # the fifth project has no bench.json
    table = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert table["table"] == "bench" and table["missing"] == [bench.PROJECTS[4]]
    assert evidence_problems(table) == []
    md = (tmp_path / "BENCHMARKS.md").read_text()
    for p in bench.PROJECTS:
        assert f"## {p}" in md
    assert "1.900 [1.800, 2.000]" in md and "missing:" in md
    assert (tmp_path / "results" / "bench.md").read_text().startswith("# bench")


def test_main_all_present_no_flags_exits_zero(tmp_path, monkeypatch):
    _fake_workspace(tmp_path, monkeypatch, {p: fake_bench(p) for p in bench.PROJECTS})
    assert bench.main(["--merge-only", "--projects", "llm_trm", "superrelora"]) == 0
    table = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert {r["method"].split(":")[0] for r in table["rows"]} == {"llm_trm", "superrelora"}


def test_run_project_runs_make_and_rejects_stale_output(tmp_path, monkeypatch):
    _fake_workspace(tmp_path, monkeypatch, {"llm_trm": fake_bench("llm_trm")})
    old = time.time() - 100
    os.utime(tmp_path / "llm_trm" / "results" / "bench.json", (old, old))
    res = bench.run_project("llm_trm", timeout=30, log_dir=tmp_path)  # `make bench` runs `true`: writes nothing
    assert res["rc"] == 0 and res["data"] is None and "stale" in res["reason"]
    (tmp_path / "llm_trm" / "Makefile").write_text("bench:\n\tsleep 5\n")
    res = bench.run_project("llm_trm", timeout=0.5, log_dir=tmp_path)
    assert res["rc"] is None and "timeout" in res["reason"]
    (tmp_path / "llm_trm" / "Makefile").write_text("test:\n\ttrue\n")
    assert "no `bench` target" in bench.run_project("llm_trm", timeout=5, log_dir=tmp_path)["reason"]


@pytest.mark.parametrize("argv, expect", [(["--projects", "nope"], "unknown project"),
                                          (["--timeout", "0"], "must be > 0"),
                                          (["--out", "README.md/x"], "under a file")])
def test_bad_flags_one_line_exit_2(argv, expect, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expect in err[0]
