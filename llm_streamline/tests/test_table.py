"""Table assembly from per-row outputs (no model): intervals, paired comparisons, retention, curve, presets.

    python -m pytest tests/test_table.py -q
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llm_streamline.table import ROWS, TRAINED, curve_table, main_table, parse, plan, run_table

TASKS = ["arc_easy", "hellaswag"]


def write_row(work, row, n, nll, accs):
    d = work / ("original" if row == "original" else f"n{n}") / "eval" / row
    d.mkdir(parents=True)
    np.save(d / "token_nll.npy", np.asarray(nll, dtype=np.float64))
    (d / "row.json").write_text(json.dumps({"row": row, "n": n, "layers": 30 - n, "params": 1e8, "ppl": 1.0,
                                            "val_nll": float(np.mean(nll))}))
    for t in TASKS:
        rows = [{"doc_id": i, "target": 0, "acc": float(v), "filtered_resps": [[-1.0, False], [-2.0 if v else 0.0, False]]}
                for i, v in enumerate(accs)]
        (d / f"samples_{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def fake_work(tmp_path, rows, n=8):
    rng = np.random.default_rng(0)
    work = tmp_path / "w"
    base = rng.uniform(2.0, 4.0, size=255 * 8)
    shift = {"original": 0.0, "none": 2.0, "shortgpt": 1.0, "mse": 2.5, "llm": 0.5, "mse_nosink": 1.0, "ffn": 1.8}
    acc = {"original": 0.8, "none": 0.3, "shortgpt": 0.5, "mse": 0.3, "llm": 0.7, "mse_nosink": 0.5, "ffn": 0.4}
    for row in rows:
        accs = (rng.uniform(size=200) < acc[row]).astype(float)
        write_row(work, row, n, base + shift[row] + rng.normal(0, 0.01, base.size), accs)
        if row in TRAINED:
            d = work / f"n{n}" / row
            d.mkdir(parents=True, exist_ok=True)
            (d / "streamline.json").write_text(json.dumps({
                "best_layer": 10, "layer_intervals": n, "scores": [0.9] * (30 - n), "block_influence": list(np.linspace(
                    0.3, 0.01, 30)), "train_blocks": 128, "seq_len": 128, "epoches": 3, "model_name": "m",
                "history": {"train_mse": [3.0, 2.0, 1.0], "val_mse": [3.0, 1.5]}}))
    return work


def test_main_table_has_intervals_comparisons_and_a_supported_verdict(tmp_path):
    rows = ["original", "none", "shortgpt", "mse", "llm"]
    work = fake_work(tmp_path, rows)
    a = parse(["--preset", "cpu", "--rows", ",".join(rows), "--tasks", ",".join(TASKS), "--work_dir", str(tmp_path)])
    t = main_table(a, work, "make table", 1.0).to_dict()
    by = {r["method"]: r for r in t["rows"]}
    orig = by[ROWS["original"]]["metrics"]
    assert orig["perplexity"]["mean"] == pytest.approx(math.exp(np.load(work / "original/eval/original/token_nll.npy").mean()))
    assert orig["perplexity"]["ci95"][0] < orig["perplexity"]["mean"] < orig["perplexity"]["ci95"][1]
    assert orig["retention"]["mean"] == pytest.approx(1.0) and orig["retention"]["ci95"] == [1.0, 1.0]
    llm = by[ROWS["llm"]]["metrics"]
    assert llm["avg"]["mean"] == pytest.approx(np.mean([llm[t]["mean"] for t in TASKS]))
    assert llm["retention"]["mean"] == pytest.approx(llm["avg"]["mean"] / orig["avg"]["mean"])
    assert by[ROWS["mse"]]["train_tokens"] == 128 * 128 * 3
    comps = {(c["a"], c["b"], c["metric"]): c for c in t["comparisons"]}
    assert len(comps) == 2 * 2 * 2  # two trained rows x (shortgpt, none) x (nll, avg)
    c = comps[(ROWS["llm"], ROWS["shortgpt"], "nll")]
    assert c["diff"] == pytest.approx(-0.5, abs=0.01) and c["ci95"][1] < 0  # llm better on the same tokens
    assert f"{ROWS['llm']} beats {ROWS['shortgpt']} on nll" in t["verdict"]
    assert comps[(ROWS["mse"], ROWS["none"], "nll")]["ci95"][0] > 0  # mse worse than removal here
    from shared_utils.stats import render_markdown

    md = render_markdown(t)
    assert "| perplexity |" in md.replace("| method | perplexity |", "| perplexity |") and "retention" in md


def test_curve_table_and_plot(tmp_path):
    work = fake_work(tmp_path, ["original", "shortgpt", "mse_nosink"], n=8)
    for n in (4, 12):
        rng = np.random.default_rng(n)
        for row in ("shortgpt", "mse_nosink"):
            write_row(work, row, n, rng.uniform(2, 4, 255 * 8) + n / 4, (rng.uniform(size=200) < 0.5).astype(float))
    a = parse(["--preset", "cpu", "--curve_n", "4,12", "--tasks", "", "--rows", "original,shortgpt,mse_nosink"])
    t = curve_table(a, work, "make table", 1.0, "mse_nosink")
    d = t.to_dict()
    assert [r.get("n") for r in d["rows"]] == [0, 4, 4, 8, 8, 12, 12] and len(d["comparisons"]) == 3
    gpu = parse(["--preset", "gpu", "--curve_n", "4,12", "--tasks", ",".join(TASKS), "--rows", "original,shortgpt",
                 "--curve_tasks"])
    rows = curve_table(gpu, work, "make table PRESET=gpu", 1.0, "mse_nosink").to_dict()["rows"]
    assert all({"perplexity", "avg", "retention"} <= set(r["metrics"]) for r in rows)  # accuracy along the curve
    from llm_streamline.table import plot_curve

    plot_curve(t, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_presets_and_dry_run(capsys):
    cpu = parse(["--preset", "cpu"])
    assert cpu.limit >= 100 and len(cpu.task_list) >= 4 and cpu.ppl_blocks * (cpu.ppl_seq_len - 1) >= 16384
    gpu = parse(["--preset", "gpu"])
    assert gpu.limit == 0 and gpu.ppl_blocks == 0 and len(gpu.task_list) == 8 and gpu.device == "cuda"
    jobs = plan(gpu)
    assert [j for j in jobs if j[0] == "train" and j[1] == 8] == [("train", 8, r) for r in TRAINED]
    assert jobs.index(("train", 8, "llm")) + 1 == jobs.index(("eval", 8, "llm"))  # whole rows first
    assert jobs[0] == ("train", 8, "mse")  # ... after the first training run, which yields the selection
    assert sorted({j[1] for j in jobs}) == [4, 6, 8, 10, 12]
    out = run_table(["--preset", "gpu", "--dry_run"])
    assert out["jobs"] == jobs and "[plan] eval 12 curve" in capsys.readouterr().out


def test_bad_table_flags():
    from shared_utils.errors import UserError

    with pytest.raises(UserError, match="unknown table rows"):
        parse(["--rows", "original,bogus"])
    with pytest.raises(UserError, match="does not exist"):
        parse(["--eval_data_dir", "/nonexistent/data"])
    with pytest.raises(UserError, match="--curve_row"):
        parse(["--curve_row", "shortgpt"])


@pytest.mark.slow  # ~1 min idle (lm-eval's task setup per row dominates)
def test_run_table_end_to_end_on_a_tiny_model(tiny_dir, corpus, tmp_path):
    """Training through the entry point, evaluation, assembly, curve and plots; a re-run skips every finished job."""
    fixtures = str(Path(__file__).parent / "fixtures" / "tasks")
    argv = ["--preset", "cpu", "--model_name", str(tiny_dir), "--data_path", str(corpus), "--ppl_data_path",
            str(corpus), "--eval_data_dir", fixtures, "--tasks", "arc_easy", "--limit", "0", "--rows",
            "original,none,shortgpt,mse_nosink", "--curve_n", "1", "--layer_intervals", "2", "--seq_len", "32",
            "--cosine_num_data", "4", "--train_num_data", "16", "--num_test_blocks", "4", "--ppl_seq_len", "32",
            "--ppl_blocks", "6", "--mse_epochs", "1", "--eval_batch_size", "4", "--work_dir", str(tmp_path / "w"),
            "--out_dir", str(tmp_path / "r"), "--num_threads", "1"]
    out = run_table(argv)
    rows = {r["method"]: r for r in out["table"]["rows"]}
    assert set(rows) == {ROWS[r] for r in ("original", "none", "shortgpt", "mse_nosink")}
    assert rows[ROWS["original"]]["metrics"]["perplexity"]["n"] == 6 * 31
    assert rows[ROWS["mse_nosink"]]["layers"] == 4 and rows[ROWS["mse_nosink"]]["train_tokens"] == 16 * 32
    assert [r["n"] for r in out["curve"]["rows"]] == [0, 1, 1, 2, 2]
    for name in ("table.json", "table.md", "pruning_curve.json", "pruning_curve.png", "training_curves.png",
                 "cosine_scores.png"):
        assert (tmp_path / "r" / name).is_file(), name
    before = (tmp_path / "w" / "cpu" / "n2" / "eval" / "none" / "row.json").stat().st_mtime
    run_table(argv)
    assert (tmp_path / "w" / "cpu" / "n2" / "eval" / "none" / "row.json").stat().st_mtime == before


def test_assemble_only_names_missing_jobs(tmp_path):
    from shared_utils.errors import UserError

    work = fake_work(tmp_path, ["original", "none", "shortgpt", "mse_nosink"])
    argv = ["--preset", "cpu_ppl", "--rows", "original,none,shortgpt,mse_nosink", "--curve_n", "",
            "--work_dir", str(tmp_path), "--out_dir", str(tmp_path / "r"), "--assemble_only"]
    (work.rename(tmp_path / "cpu_ppl"))
    out = run_table(argv)
    assert len(out["table"]["rows"]) == 4 and (tmp_path / "r" / "table_cpu_ppl.json").is_file()
    with pytest.raises(UserError, match="not finished.*train n=8 llm"):
        run_table(argv[:3] + ["original,llm"] + argv[4:])
