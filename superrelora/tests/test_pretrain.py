"""The pre-training comparison (scripts/pretrain_table.py) on a tiny preset: same warm start and data for every
row, ranks, resumability, the EVIDENCE-shaped table; and gpu_check.py --dry-run.

    python -m pytest tests/test_pretrain.py -q
"""

import argparse
import json
from pathlib import Path

import pytest

import superrelora.pretrain as pt
from shared_utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "tests" / "data" / "tiny_corpus.txt"


def test_compact_vocab_and_blocks():
    ids = [5, 5, 5, 7, 7, 9, 11, 5, 7, 3]
    m = pt.compact_vocab(ids, 3)  # 2 kept tokens + UNK (0)
    assert m == {5: 1, 7: 2}
    blocks = pt.to_blocks(ids, m, 4)
    assert blocks == [[1, 1, 1, 2], [2, 0, 0, 1]]  # contiguous, last partial block dropped


@pytest.fixture
def tiny_preset(monkeypatch):
    p = {**pt.PRESETS["smoke"], "warm": 2, "steps": 4, "merge_every": 2, "sweep": [4], "eval_blocks": 6}
    monkeypatch.setitem(pt.PRESETS, "tiny_test", p)
    return p


def test_rows_share_warm_start_and_data_and_resume(tmp_path, tiny_preset):
    rows = ["full", "lora", "superrelora_a0.5"]
    recs = pt.run_all("tiny_test", tmp_path, text_file=TEXT, rows=rows, seeds=[0], log=lambda *_: None)
    by = {r["row"]: r for r in recs}
    assert set(by) == {*rows, "warm_start"}
    first = {}
    for row in rows:  # update 1 of every row starts from the same weights on the same blocks (LoRA B = 0)
        line = (tmp_path / "seed0" / row / "metrics.jsonl").read_text().splitlines()[0]
        first[row] = json.loads(line)["loss"]
    assert max(first.values()) - min(first.values()) < 1e-5, first
    r = tiny_preset["r"]
    assert by["lora"]["rank"]["numerical_rank"] <= r and by["lora"]["merges"] == 0
    assert by["full"]["rank"]["numerical_rank"] > r
    assert by["superrelora_a0.5"]["merges"] == 2 and by["superrelora_a0.5"]["merge_steps"] == [2, 4]
    assert len(by["full"]["eval_nll"]) == 6 and by["full"]["tokens_seen"] == 6 * 4 * 16
    stamp = (tmp_path / "seed0" / "lora" / "row.json").stat().st_mtime_ns
    again = pt.run_all("tiny_test", tmp_path, text_file=TEXT, rows=rows, seeds=[0], log=lambda *_: None)
    assert (tmp_path / "seed0" / "lora" / "row.json").stat().st_mtime_ns == stamp  # skipped, not re-trained
    assert {x["row"]: x["perplexity"] for x in again if "perplexity" in x} == \
        {x["row"]: x["perplexity"] for x in recs if "perplexity" in x}
    pt.PRESETS["tiny_test"] = {**tiny_preset, "steps": 5}  # other settings: cached rows are refused, not reused
    with pytest.raises(UserError, match="other preset settings"):
        pt.run_all("tiny_test", tmp_path, text_file=TEXT, rows=rows, seeds=[0], log=lambda *_: None)


def test_table_has_intervals_comparisons_and_plots(tmp_path, tiny_preset):
    recs = pt.run_all("tiny_test", tmp_path / "runs", text_file=TEXT, seeds=[0, 1], sweep_seeds=[0],
                      rows=["full", "lora", "superrelora_a0.5", "sweep_a0.5_every4"], log=lambda *_: None)
    assert [r["seed"] for r in recs if r["row"] == "sweep_a0.5_every4"] == [0]  # sweep rows: sweep seeds only
    data = json.loads((tmp_path / "runs" / "data.json").read_text())
    d = pt.assemble(recs, "tiny_test", "pytest", 1.0, data, tmp_path / "res", tmp_path / "runs")
    rows = {r["method"]: r for r in d["rows"]}
    assert list(rows)[:3] == ["Warm start only (no further training)", "Full-rank", "LoRA"]
    for r in rows.values():
        for name, m in r["metrics"].items():
            assert len(m["ci95"]) == 2 and m["ci95"][0] <= m["mean"] <= m["ci95"][1], (r["method"], name)
    assert rows["LoRA"]["metrics"]["perplexity"]["seeds"] == 2
    assert rows["SuperReLoRA exact a=0.5 merge_every=4"]["metrics"]["perplexity"]["seeds"] == 1
    comps = {(c["a"], c["b"], c["metric"]) for c in d["comparisons"]}
    assert ("Full-rank", "LoRA", "eval_loss") in comps and ("SuperReLoRA exact a=0.5", "LoRA", "perplexity") in comps
    assert d["verdict"] and any("gap" in n for n in d["notes"])
    for f in ("pretrain_table.json", "pretrain_table.md", "pretrain_loss_curve.png", "merge_every_sweep.png"):
        assert (tmp_path / "res" / f).is_file(), f


def test_gpu_check_dry_run_json(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("superrelora_gpu_check", ROOT / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    out = gc.check(argparse.Namespace(dry_run=True, peak_tflops=989.0))
    assert out["project"] == "superrelora"
    names = {i["name"]: i for i in out["items"]}
    assert names["train_step_bf16"]["ok"] and names["eval"]["ok"], out["items"]
    m = out["mfu"]
    assert m["flops"] > 0 and m["seconds"] > 0 and m["peak_flops"] == 989e12 and 0 < m["value"] < 1
