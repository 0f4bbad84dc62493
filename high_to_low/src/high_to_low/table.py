"""Method-vs-baseline tables (``make table``): parity and multi-step arithmetic on a tiny from-scratch Llama, seeds
and 95% intervals; a ``gpu`` preset for GSM8K on SmolLM2.

    python -m high_to_low.table --out results --work runs/table --steps 400 --parity_seeds 0 1 2 3 4 5 6 7 \\
        --arith_seeds 0 1 2 3 4 --workers 2
    python -m high_to_low.table --preset gpu --gsm8k_dir ../../shared/data/gsm8k --out results --dry_run

CPU cells: arms transformer / TurboConn g=4 (README default) / TurboConn g=1 (the paper's t -> t+1), same data,
steps, lr and seed per (task, seed); every cell trains with train.py's code and is scored with evaluation.py's
code on a test set whose prompts are held out from every training set (``reasoning_datasets.is_heldout``; the
measured overlap is written into the table) and on longer inputs. Each finished cell is kept in
``--work/<task>__<arm>__s<seed>/cell.json`` and skipped on a rerun, so the runner can be stopped and resumed.
Tables are written per task (``results/table_<task>.json`` + ``.md``) from the seeds for which every arm finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path

from shared_utils import stats
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json

ARMS = (("transformer", False, 4), ("TurboConn g=4", True, 4), ("TurboConn g=1", True, 1))
TASKS = {
    "parity": {"gen": {"seq_len": 16}, "train": ["--seq_len", "16"],
               "longer": ["--min_len", "17", "--seq_len", "32"], "longer_gen": {"min_len": 17, "seq_len": 32},
               "longer_name": "17..32 bits", "train_name": "1..16 bits"},
    "multi-step-arithmetic": {"gen": {"max_n": 6}, "train": ["--max_n", "6"],
                              "longer": ["--min_len", "7", "--max_n", "10"], "longer_gen": {"min_len": 7, "max_n": 10},
                              "longer_name": "7..10 nodes", "train_name": "1..6 nodes"},
}
N_TEST, N_LONGER = 1000, 500
TINY_MODEL_NAME = "tiny Llama (6 layers, hidden 64, from scratch)"


def cell_name(task: str, arm: str, seed: int) -> str:
    return f"{task}__{arm.replace(' ', '_').replace('=', '')}__s{seed}"


def synthetic_cells(steps: int, seeds_by_task: dict, batch: int, n_test: int = N_TEST,
                    n_longer: int = N_LONGER) -> list[dict]:
    cells = []  # task by task (parity first), seed-major, so an interrupted run still has whole seeds
    for task, seeds in seeds_by_task.items():
        spec = TASKS[task]
        for seed in seeds:
            for arm, our, g in ARMS:
                train = ["--model_name", "tiny", "--dataset_name", task, "--our_method", str(our),
                         "--group_size", str(g), "--batch_size", str(batch), "--num_train", str(steps * batch),
                         "--total_epochs", "1", "--lr", "1e-3", "--warmup_steps", "50",
                         "--period", str(max(1, steps - 50)), "--seed", str(seed), *spec["train"]]
                cells.append({"name": cell_name(task, arm, seed), "task": task, "arm": arm, "g": g, "seed": seed,
                              "model": TINY_MODEL_NAME, "train": train, "device": "cpu",
                              "evals": {"test": ["--num_eval", str(n_test)],
                                        "longer": ["--num_eval", str(n_longer), *spec["longer"]]}})
    return cells


def gsm8k_cells(gsm8k_dir: str, steps: int, batch: int, device: str, num_eval: int | None, seeds=(0,)) -> list[dict]:
    """SmolLM2-135M-Instruct + LoRA r=12 (+ 36 bridges, g=4) vs parameter-matched LoRA, on the official GSM8K."""
    cells = []
    for seed in seeds:
        for arm, our, g in ARMS[:2]:
            train = ["--model_name", "smollm2-135m", "--dataset_name", "gsm8k", "--data_dir", gsm8k_dir,
                     "--our_method", str(our), "--group_size", str(g), "--batch_size", str(batch), "--num_train",
                     str(batch * steps), "--total_epochs", "1", "--lr", "2e-4", "--warmup_steps", str(max(1, steps // 10)),
                     "--period", str(max(1, steps - steps // 10)), "--seed", str(seed), "--rank", "12"]
            evals = ["--batch_size", "64"] + ([] if num_eval is None else ["--num_eval", str(num_eval)])
            cells.append({"name": cell_name("gsm8k", arm, seed), "task": "gsm8k", "arm": arm, "g": g, "seed": seed,
                          "model": "SmolLM2-135M-Instruct + LoRA", "train": train, "device": device,
                          "evals": {"test": evals}})
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
    threads = "1" if cell["device"] == "cpu" else "0"
    t0 = time.perf_counter()
    folder = train(train_parser().parse_args(cell["train"] + [
        "--checkpoint_root_folder", str(out / "ckpt"), "--save_interval", "100000", "--device", cell["device"],
        "--threads", threads]))
    train_s = time.perf_counter() - t0
    cfg = json.loads((folder / "save_configs.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = {**{k: v for k, v in cell.items() if k not in ("train", "evals")}, "train_s": train_s,
              "steps": rows[-1]["step"], "step_time_median": statistics.median(r["step_time"] for r in rows),
              "losses": [r["loss"] for r in rows],
              "trainable_params": json.loads((folder / "meta.json").read_text()).get("trainable_params"),
              "bridges": len(cfg["bridges"]), "lora_rank": None if cfg["full_finetune"] else cfg["lora_rank"]}
    kind = "improved" if cfg["our_method"] else "transformer"
    stem = f"{Path(cfg['model_name']).name}_{kind}"
    for tag, flags in cell["evals"].items():
        t0 = time.perf_counter()
        args = eval_parser(not cfg["our_method"]).parse_args(flags + [
            "--checkpoint_folder", str(folder), "--dataset_name", cell["task"], "--result_folder",
            str(out / "results"), "--tag", f"_{tag}", "--device", cell["device"], "--threads", threads])
        run_evaluation(args, transformer=not cfg["our_method"])
        em = json.loads((out / "results" / f"{stem}_greedy_em_{tag}.json").read_text())[str(result["steps"])]
        recs = [json.loads(x) for x in
                (out / "results" / f"{stem}_predictions_{result['steps']}_{tag}.jsonl").read_text().splitlines()]
        result[tag] = {**em, "eval_s": time.perf_counter() - t0, "correct": [bool(r["correct"]) for r in recs],
                       "answer_prob": [r["answer_prob"] for r in recs], "inputs": [r["input"] for r in recs],
                       "gold": [r["gold"] for r in recs]}
    atomic_write_json(done, result)
    return result


# ------------------------------------------------------------------------------------------------- tables
def complete_seeds(results: list[dict], task: str, arms) -> list[int]:
    """Seeds of ``task`` for which every arm finished (the only ones a paired table may use)."""
    have = {}
    for r in results:
        if r["task"] == task:
            have.setdefault(r["seed"], set()).add(r["arm"])
    return sorted(s for s, a in have.items() if set(arms) <= a)


def overlap_counts(task: str, seeds, steps: int, batch: int, n_test: int, n_longer: int) -> dict:
    """Test / longer prompts that occur verbatim in the union of every seed's training prompts (must be 0)."""
    from high_to_low.reasoning_datasets import load_split

    spec = TASKS[task]
    train = set()
    for seed in seeds:
        train.update(it["input"] for it in load_split(task, "train", num=steps * batch, seed=seed, **spec["gen"]))
    test = load_split(task, "test", num=n_test, **spec["gen"])
    longer = load_split(task, "test", num=n_longer, **{**spec["gen"], **spec["longer_gen"]})
    return {"test": sum(it["input"] in train for it in test), "longer": sum(it["input"] in train for it in longer),
            "n_test": len(test), "n_longer": len(longer), "train_prompts": len(train)}


def majority_correct(task: str, items_gold: list[str], seeds, steps: int, batch: int) -> tuple[str, list[float]]:
    """The most frequent training answer, and its per-example correctness on the test set (the metric's floor)."""
    from collections import Counter

    from high_to_low.reasoning_datasets import load_split

    counts = Counter()
    for seed in seeds:
        counts.update(it["output"] for it in load_split(task, "train", num=steps * batch, seed=seed, **TASKS[task]["gen"]))
    label = counts.most_common(1)[0][0]
    return label, [float(g == label) for g in items_gold]


def task_table(task: str, results: list[dict], seeds: list[int], meta: dict, steps: int, batch: int):
    arms = [a for a, _, _ in ARMS]
    by = {(r["arm"], r["seed"]): r for r in results if r["task"] == task and r["seed"] in seeds}
    first = by[(arms[0], seeds[0])]
    overlap = overlap_counts(task, seeds, steps, batch, len(first["test"]["gold"]), len(first["longer"]["gold"]))
    spec = TASKS[task]
    t = stats.ResultsTable(f"high_to_low_{task}", meta["command"], preset="cpu", machine=meta["machine"],
                           scale=f"{TINY_MODEL_NAME}, {steps} steps x batch {batch}, lr 1e-3, {len(seeds)} seeds "
                                 f"({', '.join(map(str, seeds))})",
                           test_train_overlap={"test": overlap["test"], "longer": overlap["longer"],
                                               "train_prompts": overlap["train_prompts"]},
                           seeds=seeds)
    t.wall_s = meta["wall_s"]
    label, floor = majority_correct(task, first["test"]["gold"], seeds, steps, batch)
    _, floor_longer = majority_correct(task, first["longer"]["gold"], seeds, steps, batch)
    base = f"{task}: majority class"
    t.add(base, "greedy_em", stats.metric_examples(floor), answer=label)
    t.add(base, "greedy_em_longer", stats.metric_examples(floor_longer))
    per_seed = {}
    for arm in arms:
        rs = [by[(arm, s)] for s in seeds]
        row = f"{task}: {arm}"
        em = [r["test"]["greedy_em"] for r in rs]
        em_longer = [r["longer"]["greedy_em"] for r in rs]
        per_seed[arm] = (em, em_longer, [r["test"]["mean_prob"] for r in rs])
        t.add(row, "greedy_em", stats.metric_seeds(em), per_seed=em,
              trainable_params=rs[0]["trainable_params"], steps=rs[0]["steps"], g=None if arm == "transformer"
              else rs[0]["g"])
        t.add(row, "greedy_em_longer", stats.metric_seeds(em_longer), per_seed_longer=em_longer)
        t.add(row, "answer_prob", stats.metric_seeds(per_seed[arm][2]))
        t.add(row, "train_s_per_step", stats.metric_seeds([r["step_time_median"] for r in rs]))
    hib = {"greedy_em": True, "greedy_em_longer": True, "answer_prob": True}
    for arm in arms[1:]:
        for k, metric in enumerate(("greedy_em", "greedy_em_longer", "answer_prob")):
            t.compare(f"{task}: {arm}", f"{task}: transformer", metric,
                      stats.paired_diff(per_seed[arm][k], per_seed["transformer"][k], unit="seed"))
    t.auto_verdict(hib)
    real = [c for c in t.comparisons if stats.excludes_zero(c)]
    t.verdict = (f"{len(real)} of {len(t.comparisons)} paired differences vs the transformer exclude 0 at this scale "
                 f"({len(seeds)} seeds, {overlap['n_test']} + {overlap['n_longer']} test items). " + t.verdict)
    t.notes += [
        f"Rows `<task>: <arm>`: mean over seeds of the per-seed greedy exact match (fraction), 95% t-interval over "
        f"seeds (unit seed); comparisons: paired differences on the same seeds and test items (t-interval of the "
        f"per-seed differences). `greedy_em`: {overlap['n_test']} test items, {spec['train_name']} (training "
        f"lengths); `greedy_em_longer`: {overlap['n_longer']} items of {spec['longer_name']} (never trained on).",
        f"Test/train overlap (exact prompt string, union of the {len(seeds)} seeds' {overlap['train_prompts']:,} "
        f"distinct training prompts): {overlap['test']} of {overlap['n_test']} test and {overlap['longer']} of "
        f"{overlap['n_longer']} longer items. Held out by pattern: 1 prompt in 8 (BLAKE2b hash of the input) is reserved "
        "for evaluation and never generated for training, because the short-input space is too small for "
        "deduplication alone (parity 1..16 bits: 66% of a plain test set occurred in training).",
        f"Majority class: always answering '{label}' (the most frequent training answer), per-example bootstrap.",
        "train_s_per_step: median seconds per optimizer step of each run (1 thread; the 2 cores were shared with "
        "other jobs, so absolute times are inflated), t-interval over seeds.",
    ]
    return t


def plot_curves(task: str, results: list[dict], seeds: list[int], out: Path, smooth: int = 10) -> Path:
    """Training loss per example vs step: mean over seeds with a 95% t-interval band, per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, _, _ in ARMS:
        runs = [r["losses"] for r in results if r["task"] == task and r["arm"] == arm and r["seed"] in seeds]
        n = min(len(x) for x in runs)
        m = np.array([x[:n] for x in runs])
        kernel = np.ones(smooth) / smooth
        m = np.array([np.convolve(x, kernel, mode="valid") for x in m])
        steps = np.arange(m.shape[1]) + smooth
        mean = m.mean(0)
        if m.shape[0] > 1:
            half = np.array([stats.t_interval(col)[1] for col in m.T]) - mean
        else:
            half = np.zeros_like(mean)
        ax.plot(steps, mean, label=f"{arm} ({m.shape[0]} seeds)")
        ax.fill_between(steps, mean - half, mean + half, alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"training loss per example ({smooth}-step mean)")
    ax.set_title(f"{task}: mean over seeds, 95% t-interval band")
    ax.legend()
    fig.tight_layout()
    path = out / f"learning_curves_{task}.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Method vs baseline tables (cpu: parity + arithmetic; gpu: GSM8K).")
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--out", default="results")
    p.add_argument("--work", default="runs/table")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--parity_seeds", type=int, nargs="*", default=list(range(8)))
    p.add_argument("--arith_seeds", type=int, nargs="*", default=list(range(5)))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--num_test", type=int, default=N_TEST)
    p.add_argument("--num_longer", type=int, default=N_LONGER)
    p.add_argument("--gsm8k_dir", default="", help="gsm8k data (gpu preset; '' skips GSM8K)")
    p.add_argument("--gsm8k_steps", type=int, default=150)
    p.add_argument("--gsm8k_batch", type=int, default=16)
    p.add_argument("--gsm8k_num_eval", type=int, default=None, help="default: the full test set (1,319)")
    p.add_argument("--aggregate_only", action="store_true", help="only tabulate the cells already finished")
    p.add_argument("--dry_run", action="store_true", help="print the planned cells and exit")
    return p


def plan(args) -> list[dict]:
    for name in ("steps", "batch_size", "workers", "gsm8k_steps", "gsm8k_batch", "num_test", "num_longer"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be >= 1 (got {getattr(args, name)})")
    if args.preset == "gpu":
        if not args.gsm8k_dir or not Path(args.gsm8k_dir).is_dir():
            raise UserError(f"the gpu preset needs --gsm8k_dir (a folder with GSM8K), got '{args.gsm8k_dir}'")
        return gsm8k_cells(args.gsm8k_dir, args.gsm8k_steps, args.gsm8k_batch, "cuda", args.gsm8k_num_eval)
    return synthetic_cells(args.steps, {"parity": args.parity_seeds, "multi-step-arithmetic": args.arith_seeds},
                           args.batch_size, args.num_test, args.num_longer)


def gsm8k_table(results: list[dict], meta: dict):
    t = stats.ResultsTable("high_to_low_gsm8k", meta["command"], preset="gpu", machine=meta["machine"])
    t.wall_s = meta["wall_s"]
    by = {r["arm"]: r for r in results}
    for arm in ("transformer", "TurboConn g=4"):
        r = by[arm]
        t.add(f"gsm8k: {arm}", "greedy_em", stats.metric_examples([float(c) for c in r["test"]["correct"]]),
              trainable_params=r["trainable_params"], steps=r["steps"])
    t.compare("gsm8k: TurboConn g=4", "gsm8k: transformer", "greedy_em",
              stats.paired_diff([float(c) for c in by["TurboConn g=4"]["test"]["correct"]],
                                [float(c) for c in by["transformer"]["test"]["correct"]]))
    t.auto_verdict({"greedy_em": True})
    return t


@cli_main
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    cells = plan(args)
    if args.dry_run:
        for c in cells:
            print(c["name"], "train.py", " ".join(c["train"]), "| eval:", json.dumps(c["evals"]))
        print(f"{len(cells)} cells (preset {args.preset}); finished ones in {args.work} are skipped")
        return
    t0 = time.time()
    if args.aggregate_only:
        results = [json.loads(p.read_text()) for c in cells if (p := Path(args.work) / c["name"] / "cell.json").exists()]
    else:
        with get_context("spawn").Pool(args.workers) as pool:
            results = pool.starmap(run_cell, [(c, args.work) for c in cells], chunksize=1)
    argv_s = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--aggregate_only"]
    meta = {"command": "python -m high_to_low.table " + " ".join(argv_s), "machine": stats.machine_name(),
            "wall_s": round(sum(r["train_s"] + sum(v["eval_s"] for v in r.values() if isinstance(v, dict))
                                for r in results), 1)}
    out = Path(args.out)
    if args.preset == "gpu":
        gsm8k_table(results, meta).write(out / "table_gsm8k_gpu")
        return
    for task in TASKS:
        seeds = complete_seeds(results, task, [a for a, _, _ in ARMS])
        if len(seeds) < 2:
            print(f"[table] {task}: {len(seeds)} seed(s) with every arm finished; an interval needs 2", flush=True)
            continue
        table = task_table(task, results, seeds, meta, args.steps, args.batch_size)
        table.write(out / f"table_{task}")
        plot_curves(task, results, seeds, out)
        print(table.to_markdown(), flush=True)
    print(f"[table] done in {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
