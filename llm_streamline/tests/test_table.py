"""Table assembly from per-row results and lm-eval sample files (no model).  python -m pytest tests/test_table.py -q"""

import json

import pytest

from llm_streamline.evaluate import TABLE_TASKS
from llm_streamline.table import markdown, summarise


def write_samples(d, preds, gold):
    d.mkdir(parents=True)
    for task in TABLE_TASKS:
        rows = [{"doc_id": i, "target": g, "filtered_resps": [[-1.0 if j == p else -2.0, False] for j in range(2)]}
                for i, (p, g) in enumerate(zip(preds, gold))]
        (d / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_retention_stability_and_markdown(tmp_path):
    gold = [0, 1, 0, 1]
    write_samples(tmp_path / "eval" / "original", [0, 1, 0, 0], gold)  # 3/4 right
    write_samples(tmp_path / "eval" / "none", [0, 1, 1, 1], gold)      # 3/4 right, agrees on 2 of 4
    accs = {"original": 0.75, "none": 0.75}
    results = {row: {"layers": 30 if row == "original" else 22, "params": 1e8, "ppl": 10.0,
                     "tasks": {t: {"acc": accs[row]} for t in TABLE_TASKS}} for row in ("original", "none")}
    out = summarise(results, tmp_path, list(TABLE_TASKS))
    assert out["none"]["retained"] == pytest.approx(1.0)
    assert out["none"]["stability"] == pytest.approx(0.5)  # equal spreads -> uniform weights -> agreement rate
    meta = {"command": "x", "model_name": "m", "layer_intervals": 8, "best_layer": 10, "shortgpt_layers": [1],
            "limit": 4, "eval_source": "d", "ppl_data_path": "p", "ppl_tokens": 1, "data_path": "t", "seq_len": 8,
            "train_num_data": 1, "llm_train_num_data": 1, "cosine_num_data": 1, "machine": "cpu", "date": "today",
            "wall_minutes": 0}
    md = markdown(out, meta, list(TABLE_TASKS))
    assert md.count("\n| ") == 2 and "| 75.0 |" in md and "0.500" in md
