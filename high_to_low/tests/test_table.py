"""Table planning and assembly without training: presets, complete seeds only, intervals, overlap, curves.

    python -m pytest tests/test_table.py -q
"""

import json
import random
from pathlib import Path

import pytest

from high_to_low.table import ARMS, build_parser, complete_seeds, main, plan, plot_curves, task_table
from shared_utils.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_gpu_preset_plans_both_arms_on_the_full_gsm8k_test_set(capsys):
    cells = plan(build_parser().parse_args(["--preset", "gpu", "--gsm8k_dir", str(FIXTURES / "gsm8k")]))
    assert [c["arm"] for c in cells] == ["transformer", "TurboConn g=4"]
    assert all(c["device"] == "cuda" and "--num_eval" not in c["evals"]["test"] for c in cells)
    assert all("smollm2-135m" in c["train"] for c in cells)
    main(["--preset", "gpu", "--gsm8k_dir", str(FIXTURES / "gsm8k"), "--dry_run"])
    assert "2 cells (preset gpu)" in capsys.readouterr().out
    with pytest.raises(UserError, match="needs --gsm8k_dir"):
        plan(build_parser().parse_args(["--preset", "gpu"]))


def test_cpu_plan_is_parity_first_and_seed_major():
    cells = plan(build_parser().parse_args(["--parity_seeds", "0", "1", "--arith_seeds", "0"]))
    assert [c["task"] for c in cells] == ["parity"] * 6 + ["multi-step-arithmetic"] * 3
    assert [c["seed"] for c in cells[:6]] == [0, 0, 0, 1, 1, 1]


def fake_results(seeds, n=20, n_longer=10, skip=()):
    rng = random.Random(0)
    out = []
    for seed in seeds:
        for arm, _, g in ARMS:
            if (arm, seed) in skip:
                continue
            p = 0.9 if arm == "TurboConn g=1" else 0.5
            res = {"task": "parity", "arm": arm, "g": g, "seed": seed, "steps": 5, "trainable_params": 100,
                   "step_time_median": 0.1 + rng.random() / 100, "losses": [1.0 / (i + 1) for i in range(30)],
                   "train_s": 1.0}
            for tag, k in (("test", n), ("longer", n_longer)):
                correct = [rng.random() < p for _ in range(k)]
                res[tag] = {"greedy_em": sum(correct) / k, "mean_prob": 0.5, "correct": correct, "eval_s": 1.0,
                            "gold": [rng.choice("01") for _ in range(k)]}
            out.append(res)
    return out


def test_task_table_uses_paired_seed_intervals(tmp_path):
    results = fake_results([0, 1, 2], skip={("TurboConn g=4", 2)})
    seeds = complete_seeds(results, "parity", [a for a, _, _ in ARMS])
    assert seeds == [0, 1]  # seed 2 lacks an arm: left out of every row
    results = fake_results([0, 1, 2])
    t = task_table("parity", results, [0, 1, 2], {"command": "x", "machine": "cpu", "wall_s": 1.0}, steps=5, batch=8)
    d = t.to_dict()
    names = [r["method"] for r in d["rows"]]
    assert names == ["parity: majority class", "parity: transformer", "parity: TurboConn g=4", "parity: TurboConn g=1"]
    em = d["rows"][3]["metrics"]["greedy_em"]
    assert em["seeds"] == 3 and em["unit"] == "seed" and em["ci95"][0] <= em["mean"] <= em["ci95"][1]
    assert d["test_train_overlap"]["test"] == 0 and d["test_train_overlap"]["longer"] == 0
    comps = {(c["a"], c["metric"]) for c in d["comparisons"]}
    assert ("parity: TurboConn g=1", "greedy_em_longer") in comps and all(c["paired"] for c in d["comparisons"])
    assert "beats" in d["verdict"] or "no difference" in d["verdict"]
    t.write(tmp_path / "table_parity")
    assert json.loads((tmp_path / "table_parity.json").read_text())["rows"][1]["metrics"]["greedy_em"]["n"] == 3
    assert plot_curves("parity", results, [0, 1, 2], tmp_path).stat().st_size > 1000
