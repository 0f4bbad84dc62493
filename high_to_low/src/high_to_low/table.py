"""Reproduce the method-vs-baseline table at CPU scale (``make table``).

    python -m high_to_low.table --out results --work runs/table --steps 400 --seeds 0 1 2 --workers 2 \\
        --gsm8k_dir ../../shared/data/gsm8k

Cells: parity (train lengths 1..16) and multi-step arithmetic (max_n 6) on a tiny Llama trained from
scratch with the word-level tokenizer (0.3 M parameters, spec 8.2), arms transformer / TurboConn g=4
(README default) / TurboConn g=1 (the paper's t -> t+1); same data, steps, lr and seeds for every arm.
Plus a GSM8K row with the embedded SmolLM2-135M-Instruct (LoRA r=12 + 36 bridges vs LoRA r=14, a few
steps on a GSM8K train subset, 30 test questions): a pipeline check at real-model scale, not a result.
Every cell trains with train.py's code and is scored with evaluation.py's code; finished cells are
kept in ``--work`` and skipped on a re-run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from multiprocessing import get_context
from pathlib import Path

from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json, atomic_write_text, device_info, git_info, plot_loss_curve

ARMS = (("transformer", False, 4), ("TurboConn g=4", True, 4), ("TurboConn g=1", True, 1))
TASKS = {
    "parity": {"train": ["--seq_len", "16"], "longer": ["--min_len", "17", "--seq_len", "32"],
               "longer_name": "lengths 17..32"},
    "multi-step-arithmetic": {"train": ["--max_n", "6"], "longer": ["--min_len", "7", "--max_n", "10"],
                              "longer_name": "7..10 nodes"},
}


def cell_name(task: str, arm: str, seed: int) -> str:
    return f"{task}__{arm.replace(' ', '_').replace('=', '')}__s{seed}"


def synthetic_cells(steps: int, seeds, batch: int) -> list[dict]:
    cells = []  # seed-major, so that an interrupted table still has whole seeds
    for seed in seeds:
        for task, spec in TASKS.items():
            for arm, our, g in ARMS:
                train = ["--model_name", "tiny", "--dataset_name", task, "--our_method", str(our),
                         "--group_size", str(g), "--batch_size", str(batch), "--num_train", str(steps * batch),
                         "--total_epochs", "1", "--lr", "1e-3", "--warmup_steps", "50",
                         "--period", str(max(1, steps - 50)), "--seed", str(seed), *spec["train"]]
                cells.append({"name": cell_name(task, arm, seed), "task": task, "arm": arm, "g": g, "seed": seed,
                              "model": "tiny Llama (6 layers, hidden 64, from scratch)", "train": train,
                              "evals": {"test": ["--num_eval", "1000"],
                                        "longer": ["--num_eval", "500", *spec["longer"]]}})
    return cells


def gsm8k_cells(gsm8k_dir: str, steps: int) -> list[dict]:
    cells = []
    for arm, our, g in ARMS[:2]:
        train = ["--model_name", "smollm2-135m", "--dataset_name", "gsm8k", "--data_dir", gsm8k_dir,
                 "--our_method", str(our), "--group_size", str(g), "--batch_size", "4", "--num_train",
                 str(4 * steps), "--total_epochs", "1", "--lr", "2e-4", "--warmup_steps", "2",
                 "--period", str(max(1, steps - 2)), "--seed", "0", "--rank", "12"]
        cells.append({"name": cell_name("gsm8k", arm, 0), "task": "gsm8k", "arm": arm, "g": g, "seed": 0,
                      "model": "SmolLM2-135M-Instruct + LoRA", "train": train,
                      "evals": {"test": ["--num_eval", "30", "--batch_size", "8"]}})
    return cells


def run_cell(cell: dict, work: str) -> dict:
    """Train one cell, evaluate its last checkpoint on each eval set; cached in work/<name>/cell.json."""
    from high_to_low.evaluate import build_parser as eval_parser
    from high_to_low.evaluate import run_evaluation
    from high_to_low.training import build_parser as train_parser
    from high_to_low.training import train

    out = Path(work) / cell["name"]
    done = out / "cell.json"
    if done.exists():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    folder = train(train_parser().parse_args(cell["train"] + [
        "--checkpoint_root_folder", str(out / "ckpt"), "--save_interval", "100000", "--device", "cpu",
        "--threads", "1"]))
    train_s = time.perf_counter() - t0
    cfg = json.loads((folder / "save_configs.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = {**{k: v for k, v in cell.items() if k not in ("train", "evals")}, "train_s": train_s,
              "steps": rows[-1]["step"], "step_time_median": statistics.median(r["step_time"] for r in rows),
              "final_loss": rows[-1]["loss"], "metrics": str(folder / "metrics.jsonl"),
              "trainable_params": json.loads((folder / "meta.json").read_text()).get("trainable_params"),
              "bridges": len(cfg["bridges"]), "lora_rank": None if cfg["full_finetune"] else cfg["lora_rank"]}
    for tag, flags in cell["evals"].items():
        t0 = time.perf_counter()
        args = eval_parser(not cfg["our_method"]).parse_args(flags + [
            "--checkpoint_folder", str(folder), "--dataset_name", cell["task"], "--result_folder",
            str(out / "results"), "--tag", f"_{tag}", "--device", "cpu", "--threads", "1"])
        run_evaluation(args, transformer=not cfg["our_method"])
        kind = "improved" if cfg["our_method"] else "transformer"
        stem = f"{Path(cfg['model_name']).name}_{kind}"
        em = json.loads((out / "results" / f"{stem}_greedy_em_{tag}.json").read_text())[str(result["steps"])]
        result[tag] = {**em, "eval_s": time.perf_counter() - t0}
    atomic_write_json(done, result)
    return result


def _mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def aggregate(results: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in results):
        for arm in dict.fromkeys(r["arm"] for r in results if r["task"] == task):
            rs = [r for r in results if r["task"] == task and r["arm"] == arm]
            rows.append({
                "task": task, "arm": arm, "g": rs[0]["g"], "model": rs[0]["model"], "seeds": [r["seed"] for r in rs],
                "steps": rs[0]["steps"], "trainable_params": rs[0]["trainable_params"], "bridges": rs[0]["bridges"],
                "lora_rank": rs[0]["lora_rank"],
                "test_mean_prob": [r["test"]["mean_prob"] for r in rs],
                "test_greedy_em": [r["test"]["greedy_em"] for r in rs],
                "longer_greedy_em": [r["longer"]["greedy_em"] for r in rs if "longer" in r],
                "train_s_per_step": statistics.mean(r["step_time_median"] for r in rs),
                "eval_s_per_1000": statistics.mean(1000 * r["test"]["eval_s"] / r["test"]["n"] for r in rs),
                "n_test": rs[0]["test"]["n"], "n_longer": rs[0].get("longer", {}).get("n"),
            })
    return rows


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "# High-to-low (TurboConn) vs baseline at CPU scale", "",
        f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ", f"Date: {meta['date']}, "
        f"git {meta['git_sha']}; train + eval time summed over the cells {meta['cell_minutes']:.0f} min "
        f"({'aggregated from the cells finished so far, complete seeds only' if meta['partial'] else 'full run'}"
        f", wall time of this call {meta['wall_min']:.1f} min). Times were measured while other jobs shared "
        "the 2 cores, so s/step compares arms only roughly (see results/bench.txt for same-run ratios).", "",
        "Metrics: *answer prob* = the original's metric (teacher-forced probability of the whole answer span, "
        "mean over the test set); *greedy EM* = exact match of the greedily generated answer (grouped KV cache, "
        "bridge carries kept while decoding). Mean ± std over seeds, in %. Longer = lengths not seen in "
        "training (parity 17..32 bits; arithmetic 7..10 nodes).", "",
        "| task | model | arm | g | trainable params | steps | seeds | answer prob | greedy EM | greedy EM longer "
        "| train s/step | eval s/1000 ex |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['model']} | {r['arm']} | {r['g'] if r['arm'] != 'transformer' else '–'} "
            f"| {r['trainable_params']:,} | {r['steps']} | {len(r['seeds'])} | {_mean_std(r['test_mean_prob'])} "
            f"| {_mean_std(r['test_greedy_em'])} | {_mean_std(r['longer_greedy_em'])} "
            f"| {r['train_s_per_step']:.3f} | {r['eval_s_per_1000']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_curves(results: list[dict], out: Path) -> None:
    for task in dict.fromkeys(r["task"] for r in results):
        sources = [(r["arm"], r["metrics"]) for r in results if r["task"] == task and r["seed"] == 0]
        plot_loss_curve(sources, out / f"learning_curves_{task}.png", keys=("loss",),
                        title=f"{task}: training loss per example (seed 0)", logy=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Method vs baseline table at CPU scale.")
    p.add_argument("--out", default="results")
    p.add_argument("--work", default="runs/table")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gsm8k_dir", default="../../shared/data/gsm8k", help="'' skips the GSM8K row")
    p.add_argument("--gsm8k_steps", type=int, default=8)
    p.add_argument("--aggregate_only", action="store_true", help="only tabulate the cells already finished")
    return p


@cli_main
def main(argv=None) -> None:
    import sys

    args = build_parser().parse_args(argv)
    t0 = time.time()
    cells = synthetic_cells(args.steps, args.seeds, args.batch_size)
    if args.gsm8k_dir and Path(args.gsm8k_dir).is_dir():
        cells = gsm8k_cells(args.gsm8k_dir, args.gsm8k_steps) + cells
    elif args.gsm8k_dir:
        print(f"[table] {args.gsm8k_dir} not found: GSM8K row skipped", flush=True)
    if args.aggregate_only:  # tabulate the finished cells, keeping only (task, seed) with every arm done
        results = [json.loads(p.read_text()) for c in cells if (p := Path(args.work) / c["name"] / "cell.json").exists()]
        arms = {t: {r["arm"] for r in results if r["task"] == t} for t in {r["task"] for r in results}}
        expected = {c["task"]: {x["arm"] for x in cells if x["task"] == c["task"]} for c in cells}
        complete = {(r["task"], r["seed"]) for r in results
                    if {x["arm"] for x in results if (x["task"], x["seed"]) == (r["task"], r["seed"])}
                    == expected[r["task"]]}
        results = [r for r in results if (r["task"], r["seed"]) in complete and arms[r["task"]]]
    else:
        with get_context("spawn").Pool(args.workers) as pool:
            results = pool.starmap(run_cell, [(c, args.work) for c in cells], chunksize=1)
    out = Path(args.out)
    rows = aggregate(results)
    argv = [a for a in sys.argv[1:] if a != "--aggregate_only"]
    meta = {"command": "python -m high_to_low.table " + " ".join(argv),
            "partial": args.aggregate_only,
            "cell_minutes": sum(r["train_s"] + sum(v["eval_s"] for v in r.values() if isinstance(v, dict))
                                for r in results) / 60,
            "machine": f"{device_info()['platform']}, {device_info()['cpu_count']} CPU cores (shared), no GPU",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_min": (time.time() - t0) / 60,
            "git_sha": (git_info(Path(__file__).parent)["git_sha"] or "?")[:10]}
    atomic_write_json(out / "table.json", {"meta": meta, "rows": rows, "cells": results})
    atomic_write_text(out / "table.md", render(rows, meta))
    plot_curves(results, out)
    print(render(rows, meta))


if __name__ == "__main__":
    main()
