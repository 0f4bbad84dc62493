"""FLOP ceiling, the benchmark's rows and limit flag, and gpu_check's dry run (tiny models, CPU).

    python -m pytest tests/test_bench.py -q
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_streamline import flops as F
from shared_utils import stats

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"), ROOT / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def smollm2_shape():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=1,  # L is an argument
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)


def test_flop_ceiling_of_smollm2_counts_the_lm_head():
    model = smollm2_shape()
    per_layer = 2 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536)  # q,o + k,v + gate,up,down, per token
    assert F.layer_forward_flops(model, 1, 1) == per_layer + 4 * 576 * 1
    assert F.head_forward_flops(model, 1, 1) == 2 * 576 * 49152
    ceiling = F.flop_ceiling(model, 30, 8, 4, 128)
    assert 1.26 < ceiling < 1.28 < 30 / 22  # the "about 1.27, not 1.364"
    assert F.flop_ceiling(model, 30, 8, 1, 1, past=128) == pytest.approx(ceiling, abs=0.01)
    # training steps: MSE = 3 x one layer; LLM loss >= forward of the pruned model
    assert F.mse_step_flops(model, 2, 16) == 3 * F.layer_forward_flops(model, 2, 16)
    assert F.llm_step_flops(model, 0, 1, 16) > F.forward_flops(model, 1, 1, 16)  # the model has 1 layer here


def test_speed_row_flags_a_ratio_beyond_its_limit():
    bench = load_script("scripts/bench.py")
    t = stats.ResultsTable(table="t", command="c")
    fast = {"original": [2.0] * 20, "pruned": [1.0] * 20, "shared": [0.3] * 20}  # speed-up 2.0 > L/(L-n) 1.364
    assert bench.speed_row(t, "x", fast, 1.27, 30 / 22) is True
    ok = {"original": [1.27, 1.25, 1.3] * 7, "pruned": [1.0, 1.02, 0.99] * 7, "shared": [0.2] * 21}
    assert bench.speed_row(t, "y", ok, 1.27, 30 / 22) is False
    above = {"original": [1.33, 1.34] * 10, "pruned": [1.0, 1.0] * 10, "shared": [0.2] * 20}  # 1.27 < 1.335 < 1.364
    assert bench.speed_row(t, "z", above, 1.27, 30 / 22) is False
    rows = {r["method"]: r for r in t.to_dict()["rows"]}
    assert rows["llm_streamline: x"]["flag"] == "beyond limit" and "flag" not in rows["llm_streamline: y"]
    assert rows["llm_streamline: z"]["flag"].startswith("above FLOP ceiling")
    r = rows["llm_streamline: y"]["metrics"]
    assert r["ratio"]["mean"] == pytest.approx(r["speedup"]["mean"] / 1.27)
    assert r["limit"] == {"mean": pytest.approx(30 / 22 / 1.27)}
    assert len(rows["llm_streamline: y"]["samples_s"]["original"]) == 21


def test_bench_tiny_end_to_end(tmp_path):
    bench = load_script("scripts/bench.py")
    out = tmp_path / "bench"
    try:
        bench.main(["--tiny", "--best_layer", "2", "--rounds", "2", "--warmup", "1", "--step_repeats", "1",
                    "--batch_size", "2", "--seq_len", "16", "--out", str(out)])
    except SystemExit as exc:  # a tiny model is overhead-bound: its decode may well be flagged, exit 1
        assert exc.code == 1
    d = json.loads(out.with_suffix(".json").read_text())
    names = [r["method"] for r in d["rows"]]
    assert all(n.startswith("llm_streamline: ") for n in names) and len(names) == 4
    assert {"ratio", "limit", "speedup", "measured_ceiling"} <= set(d["rows"][0]["metrics"])
    assert all("mfu" in r["metrics"] and 0 < r["metrics"]["mfu"]["mean"] for r in d["rows"][2:])
    for r in d["rows"]:
        for k, m in r["metrics"].items():
            assert k == "limit" or m["ci95"][0] <= m["mean"] <= m["ci95"][1]


def test_gpu_check_dry_run_writes_the_contract_json(tmp_path):
    gpu_check = load_script("gpu_check.py")
    out = tmp_path / "g.json"
    gpu_check.main(["--out", str(out), "--dry-run", "--batch_size", "2"])
    d = json.loads(out.read_text())
    assert d["project"] == "llm_streamline" and d["accelerate_config"] == "4gpu.yaml"
    names = [i["name"] for i in d["items"]]
    assert {"train_step_bf16", "eval"} <= set(names) and all(i["ok"] for i in d["items"]), d["items"]
    m = d["mfu"]
    assert m["value"] == pytest.approx(m["flops"] / m["seconds"] / m["peak_flops"]) and m["peak_flops"] == 989e12


def test_gpu_check_without_cuda_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "gpu_check.py"), "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, cwd=ROOT, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin"},
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: gpu_check.py needs CUDA")
    assert "Traceback" not in proc.stderr and not (tmp_path / "g.json").exists()
