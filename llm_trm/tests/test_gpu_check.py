"""gpu_check.py --dry-run: the GPU check's code on CPU with a tiny model, JSON as the workspace contract says.

    python -m pytest tests/test_gpu_check.py -q
"""

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_the_contract_json(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT))
    import gpu_check

    assert gpu_check.main(["--out", str(tmp_path / "g.json"), "--dry-run"]) == 0
    d = json.loads((tmp_path / "g.json").read_text())
    assert d["project"] == "llm_trm" and {"train_step_bf16", "eval"} <= {i["name"] for i in d["items"]}
    assert all(i["ok"] and i["seconds"] >= 0 for i in d["items"])
    m = d["mfu"]
    assert m["value"] == m["flops"] / m["seconds"] / m["peak_flops"] and "989" in m["peak_source"]
    assert gpu_check.main(["--out", str(tmp_path / "x.json"), "--peak_tflops", "0"]) == 2


def test_gpu_check_without_cuda_says_so(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.syspath_prepend(str(PROJECT))
    import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "CUDA" in err and "\n" not in err
    assert sys.modules["gpu_check"] is gpu_check
