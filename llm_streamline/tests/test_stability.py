"""Stability: hand-computed example, uniform weights, the original's first-M bug, file readers.

    python -m pytest tests/test_stability.py -q
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llm_streamline.stability import directory_stability, stability

ROOT = Path(__file__).resolve().parents[1]


def test_hand_computed_example():
    # sigma = std of [1, 3] = 1, std of [2, 2] = 0, std of [0, 4] = 2
    ppl = [[1, 3], [2, 2], [0, 4]]
    gold = [0, 1, 0]
    orig = [0, 0, 1]      # right, wrong, wrong
    pruned = [0, 1, 1]    # right, right, wrong -> agree, disagree, agree
    e = [math.e ** 1, math.e ** 0, math.e ** 2]
    expected = (e[0] + e[2]) / sum(e)
    assert stability(ppl, orig, pruned, gold) == pytest.approx(expected)
    # the original code: M = 2 agreements -> sum of the first two weights
    assert stability(ppl, orig, pruned, gold, reference_compat=True) == pytest.approx((e[0] + e[1]) / sum(e))


def test_uniform_weights_give_agreement_rate():
    ppl = [[1.0, 2.0]] * 5
    assert stability(ppl, [0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0] * 5) == pytest.approx(3 / 5)


def _oc(entries):
    return {str(i): {**{f"label: {k}": {"PPL": v} for k, v in e["ppl"].items()}, "prediction": e["pred"], "gold": e["gold"]}
            for i, e in enumerate(entries)}


def test_opencompass_dirs_with_mmlu_family_average_and_cli(tmp_path):
    a, b = tmp_path / "orig", tmp_path / "pruned"
    a.mkdir(), b.mkdir()
    orig = [{"ppl": {0: 1.0, 1: 3.0}, "pred": 0, "gold": 0}, {"ppl": {0: 2.0, 1: 2.5}, "pred": 1, "gold": 0}]
    prun = [{"ppl": {0: 1.0, 1: 3.0}, "pred": 0, "gold": 0}, {"ppl": {0: 2.0, 1: 2.5}, "pred": 0, "gold": 0}]
    (a / "piqa.json").write_text(json.dumps(_oc(orig)))
    (b / "piqa.json").write_text(json.dumps(_oc(prun)))
    mm_o = [{"ppl": dict(zip("ABCD", [1, 2, 3, 4])), "pred": "A", "gold": "A"}]
    for name, pred in (("lukaemon_mmlu_a", "A"), ("lukaemon_mmlu_b", "B")):
        (a / f"{name}.json").write_text(json.dumps(_oc(mm_o)))
        (b / f"{name}.json").write_text(json.dumps(_oc([{**mm_o[0], "pred": pred}])))
    res = directory_stability(a, b)
    w = np.exp([1.0, 0.25]) / np.exp([1.0, 0.25]).sum()
    assert res["piqa"] == pytest.approx(w[0])
    assert res["MMLU"] == pytest.approx(0.5)
    out = subprocess.run([sys.executable, str(ROOT / "calculate_stability.py"), str(a), str(b)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "piqa" in out.stdout and "MMLU" in out.stdout


def test_lmeval_samples(tmp_path):
    a, b = tmp_path / "o", tmp_path / "p"
    a.mkdir(), b.mkdir()
    rows_o = [{"doc_id": 0, "target": 1, "filtered_resps": [[-3.0, False], [-1.0, True]]},
              {"doc_id": 1, "target": 0, "filtered_resps": [[-2.0, False], [-1.0, True]]}]
    rows_p = [{"doc_id": 0, "target": 1, "filtered_resps": [[-1.0, True], [-3.0, False]]},
              {"doc_id": 1, "target": 0, "filtered_resps": [[-2.0, False], [-1.5, True]]}]
    (a / "samples_boolq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_o))
    (b / "samples_boolq_2026-01-01T00-00-00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_p))
    w = np.exp([1.0, 0.5]) / np.exp([1.0, 0.5]).sum()
    # doc 0: orig right, pruned wrong -> disagree; doc 1: both wrong -> agree
    assert directory_stability(a, b)["boolq"] == pytest.approx(w[1])


def test_cli_bad_dir_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "calculate_stability.py"), str(tmp_path / "x"), str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
