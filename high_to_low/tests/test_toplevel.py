"""The original's top-level modules (get_model.py, reasoning_datasets.py) and gpu_check.py --dry-run.

    python -m pytest tests/test_toplevel.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_original_imports_work():
    import get_model
    import reasoning_datasets

    from high_to_low import get_model as pkg_model

    assert get_model.TurboConnLM is pkg_model.TurboConnLM
    parity = reasoning_datasets.ParityDataset(50, seq_len=8)
    assert len(parity) == 50 and set(parity[0]) == {"instruction", "input", "output"}
    assert all(1 <= len(it["input"].split()) <= 8 for it in parity.items)
    arith = reasoning_datasets.RandomPruferExpressionDataset(20, max_n=4)
    assert len(arith) == 20 and arith[0]["input"].endswith(" = ")
    model, tok = get_model.get_model("tiny", our_method=True, group_size=2, bridges=[(5, 0), (4, 1)])
    assert model.bridges == [(5, 0), (4, 1)] and model.group_size == 2
    base, _ = get_model.get_model("tiny", our_method=False)
    assert base.bridges == []
    ids = torch.tensor([tok.encode("Question: 1 0 1\nAnswer")])
    assert model(ids).shape == (1, ids.shape[1], tok.vocab_size)


def test_reasoning_datasets_script_writes_files(tmp_path):
    out = subprocess.run([sys.executable, "reasoning_datasets.py", "--dataset_name", "parity", "--out_dir",
                          str(tmp_path), "--num_train", "10", "--num_eval", "5", "--seq_len", "6"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "train.txt").read_text().splitlines()
    assert len(lines) == 10 and all("||#### " in line for line in lines)
    assert len((tmp_path / "test.txt").read_text().splitlines()) == 5


def test_gpu_check_dry_run_writes_the_contract_json(tmp_path):
    import gpu_check

    path = tmp_path / "g.json"
    assert gpu_check.main(["--out", str(path), "--dry-run", "--batch_size", "4"]) == 0
    data = json.loads(path.read_text())
    assert data["project"] == "high_to_low" and data["device"] == "cpu"
    assert [i["name"] for i in data["items"]] == ["train_step_bf16", "eval"]
    assert all(i["ok"] and i["seconds"] > 0 for i in data["items"])
    mfu = data["mfu"]
    assert mfu["value"] == mfu["flops"] / mfu["seconds"] / mfu["peak_flops"] and mfu["peak_flops"] == 989e12
    assert "989" in mfu["peak_source"]
