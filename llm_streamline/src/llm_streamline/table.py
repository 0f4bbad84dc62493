"""Reproduce the README table at small scale: original vs block removed vs ShortGPT vs Streamline (MSE, LLM loss).

    python scripts/make_table.py --eval_data_dir ../../shared/data --data_path ../../shared/data/wikitext2/valid.txt \
        --ppl_data_path ../../shared/data/wikitext2/raw/wiki.test.raw --limit 20

The two Streamline rows are produced by the real entry points (``mseloss_entry.py`` / ``llmloss_entry.py``
code paths, same flags) and reloaded from their saved directories with plain ``AutoModelForCausalLM``; the
baselines reuse the selection those runs saved (cosine scores, Block Influence on the same calibration blocks).
Every row is evaluated on WikiText-2 perplexity and zero-shot lm-eval (acc); stability compares each pruned
row's per-sample correctness with the original's. Finished steps are kept under ``--work_dir`` and skipped on
a re-run, so an interrupted table resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from llm_streamline.evaluate import PAPER_TASKS, TABLE_TASKS, lm_eval_samples, perplexity, ppl_blocks
from llm_streamline.pipeline import RECORD, load_streamlined
from llm_streamline.selection import lowest_influence_layers
from llm_streamline.stability import directory_stability
from llm_streamline.surgery import count_params, drop_layers, streamline_model
from shared_utils.errors import UserError
from shared_utils.models import load_causal_lm, load_tokenizer
from shared_utils.runs import atomic_write_json, atomic_write_text, seed_everything

ROWS = {
    "original": "original",
    "none": "block removed, no training (Ours-None)",
    "shortgpt": "ShortGPT (drop n lowest-BI layers)",
    "mse": "Streamline, MSE loss (layer)",
    "llm": "Streamline, LLM loss (layer)",
    "mse_nosink": "Streamline, MSE loss without token 0 (layer)",
    "ffn": "Streamline, MSE loss (FFN)",
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default="smollm2-135m")
    p.add_argument("--layer_intervals", type=int, default=8)
    p.add_argument("--data_path", default="embedded", help="training/calibration text (e.g. wikitext2/valid.txt)")
    p.add_argument("--ppl_data_path", default="embedded", help="perplexity text (wikitext2/raw/wiki.test.raw)")
    p.add_argument("--eval_data_dir", default=None, help="local lm-eval task copies (../../shared/data); none: Hub tasks")
    p.add_argument("--tasks", default=",".join(TABLE_TASKS))
    p.add_argument("--limit", type=int, default=20, help="examples per lm-eval task (None-like: 0 = all)")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--cosine_num_data", type=int, default=16)
    p.add_argument("--train_num_data", type=int, default=128, help="MSE training blocks")
    p.add_argument("--llm_train_num_data", type=int, default=96, help="LLM-loss training blocks")
    p.add_argument("--num_test_blocks", type=int, default=16)
    p.add_argument("--mse_epochs", type=int, default=3)
    p.add_argument("--llm_epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4, help="peak lr of both trainings (original 2e-4; few steps here)")
    p.add_argument("--ppl_seq_len", type=int, default=256)
    p.add_argument("--ppl_blocks", type=int, default=16)
    p.add_argument("--eval_batch_size", type=int, default=8)
    p.add_argument("--rows", default="original,none,shortgpt,mse,mse_nosink,llm")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work_dir", default="runs/table")
    p.add_argument("--out_dir", default="results")
    p.add_argument("--num_threads", type=int, default=0)
    p.add_argument("--note", default="", help="free text appended to table.md (e.g. how the run was split)")
    p.add_argument("--eval_only", action="store_true",
                   help="evaluate only the listed rows (no training, no summary): run row groups in parallel processes, "
                        "then once more without this flag to assemble the table")
    a = p.parse_args(argv)
    unknown = [r for r in a.rows.split(",") if r not in ROWS]
    if unknown:
        raise UserError(f"unknown table rows {unknown} (known: {', '.join(ROWS)})")
    return a


def train_argv(a, mode: str, out: Path, lightweight: str = "layer", extra: tuple = ()) -> list[str]:
    common = ["--model_name", a.model_name, "--data_path", a.data_path, "--layer_intervals", str(a.layer_intervals),
              "--seq_len", str(a.seq_len), "--cosine_num_data", str(a.cosine_num_data), "--num_test_blocks",
              str(a.num_test_blocks), "--seed", str(a.seed), "--lr", str(a.lr), "--output_dir", str(out),
              "--lightweight", lightweight, "--device", "cpu", *extra]
    if mode == "mse":
        return common + ["--train_num_data", str(a.train_num_data), "--batch_size", "8", "--gradient_accumulation_step",
                         "2", "--epoches", str(a.mse_epochs)]
    return common + ["--train_num_data", str(a.llm_train_num_data), "--batch_size", "4", "--gradient_accumulation_step",
                     "2", "--epoches", str(a.llm_epochs)]


def train_rows(a, work: Path) -> dict:
    """Run the entry points that have no saved output yet; returns the MSE run's record (selection)."""
    from llm_streamline import llm_train, mse_train

    jobs = {"mse": (mse_train, "mse", "layer", ()), "llm": (llm_train, "llm", "layer", ()),
            "mse_nosink": (mse_train, "mse", "layer", ("--mse_loss_start", "1")), "ffn": (mse_train, "mse", "ffn", ())}
    rows = a.rows.split(",")
    for row, (module, mode, kind, extra) in jobs.items():
        if (row in rows or row == "mse") and not (work / row / RECORD).is_file():
            t0 = time.time()
            module.run(train_argv(a, mode, work / row, kind, extra))
            print(f"[table] trained {row} in {time.time() - t0:.0f} s", flush=True)
    return json.loads((work / "mse" / RECORD).read_text())


def build_row(row: str, original, record: dict, work: Path, n: int):
    if row == "original":
        return original
    if row == "none":
        return streamline_model(original, record["best_layer"], n)
    if row == "shortgpt":
        return drop_layers(original, lowest_influence_layers(record["block_influence"], n))
    return load_streamlined(str(work / row))[0]


def eval_row(row: str, model, tokenizer, a, work: Path, ppl_data: torch.Tensor) -> dict:
    out = work / "eval" / row
    done = out / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.time()
    tasks = [t for t in a.tasks.split(",") if t]
    acc = lm_eval_samples(model, tokenizer, tasks, out, a.eval_data_dir, a.limit or None, a.eval_batch_size)
    result = {"row": row, "layers": model.config.num_hidden_layers, "params": count_params(model),
              "ppl": perplexity(model, ppl_data), "tasks": acc, "eval_seconds": round(time.time() - t0, 1)}
    atomic_write_json(done, result)
    print(f"[table] {row}: ppl {result['ppl']:.2f}, eval {result['eval_seconds']} s", flush=True)
    return result


def summarise(results: dict, work: Path, tasks: list[str]) -> dict:
    for r in results.values():
        accs = {t: r["tasks"][t]["acc"] for t in tasks if t in r["tasks"]}
        r["acc"] = accs
        r["avg7"] = float(np.mean([accs[t] for t in PAPER_TASKS if t in accs])) if accs else None
        r["avg8"] = float(np.mean(list(accs.values()))) if accs else None
    base = results["original"]["avg7"]
    for row, r in results.items():
        r["retained"] = r["avg7"] / base if base else None
        if row != "original":
            per_task = directory_stability(work / "eval" / "original", work / "eval" / row)
            ref = directory_stability(work / "eval" / "original", work / "eval" / row, reference_compat=True)
            r["stability_per_task"], r["stability"] = per_task, float(np.mean(list(per_task.values())))
            r["stability_reference_compat"] = float(np.mean(list(ref.values())))
    return results


def markdown(results: dict, meta: dict, tasks: list[str]) -> str:
    short = {"arc_challenge": "arc_c", "arc_easy": "arc_e"}
    cols = [t for t in PAPER_TASKS if t in tasks]
    extra = [t for t in tasks if t not in PAPER_TASKS]
    head = ["Model", "layers", "params (M)", "WikiText-2 PPL"] + [short.get(t, t) for t in cols] + ["Avg"] + \
        extra + ["Avg (8)", "retained", "stability"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, r in results.items():
        cells = [ROWS[row], str(r["layers"]), f"{r['params'] / 1e6:.1f}", f"{r['ppl']:.2f}"]
        cells += [f"{100 * r['acc'][t]:.1f}" for t in cols] + [f"{100 * r['avg7']:.1f}"]
        cells += [f"{100 * r['acc'][t]:.1f}" for t in extra] + [f"{100 * r['avg8']:.1f}", f"{100 * r['retained']:.1f}%"]
        cells += ["—" if row == "original" else f"{r['stability']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "", f"Command: `{meta['command']}`", "",
        f"Model {meta['model_name']}, n = {meta['layer_intervals']} (block {meta['best_layer']}..{meta['best_layer'] + meta['layer_intervals']} "
        f"-> 1 layer); ShortGPT drops layers {meta['shortgpt_layers']}. lm-eval 0-shot `acc` on the first "
        f"{meta['limit'] or 'all'} examples of each task ({meta['eval_source']}); PPL on {meta['ppl_tokens']} tokens of "
        f"{meta['ppl_data_path']}; training text {meta['data_path']} (seq_len {meta['seq_len']}: "
        f"{meta['train_num_data']} MSE / {meta['llm_train_num_data']} LLM-loss blocks, {meta['cosine_num_data']} for the cosine scores).",
        f"Stability: mean over tasks of the intended formula (per-task values and the original code's first-M-weights "
        f"variant in table.json). Machine: {meta['machine']}; {meta['date']}; wall time of this command "
        f"{meta['wall_minutes']} min.",
    ] + ([meta["note"]] if meta.get("note") else [])
    return "\n".join(lines + notes) + "\n"


def plot_scores(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, n = record["scores"], record["layer_intervals"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(range(len(scores)), scores, color=["C3" if j == record["best_layer"] else "C0" for j in range(len(scores))])
    ax.set_xlabel(f"block start j (layers j..j+{n} replaced by one layer)")
    ax.set_ylabel("mean 0.5 + 0.5 cos(h_j, h_{j+n+1})")
    ax.set_ylim(min(scores) - 0.02, 1.0)
    ax.set_title(f"{record['model_name']}: cosine score per candidate block (n={n})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_table(argv=None) -> dict:
    import sys

    a = parse(argv)
    t0 = time.time()
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    seed_everything(a.seed)
    work, out = Path(a.work_dir), Path(a.out_dir)
    record = json.loads((work / "mse" / RECORD).read_text()) if a.eval_only else train_rows(a, work)
    tokenizer = load_tokenizer(a.model_name)
    original = load_causal_lm(a.model_name, dtype=torch.float32).eval()
    ppl_data = ppl_blocks(tokenizer, a.ppl_data_path, a.ppl_seq_len, a.ppl_blocks)
    rows = a.rows.split(",")
    if "original" not in rows and not a.eval_only:
        rows.insert(0, "original")
    results = {}
    for row in rows:
        model = build_row(row, original, record, work, a.layer_intervals)
        results[row] = eval_row(row, model, tokenizer, a, work, ppl_data)
    if a.eval_only:
        return results
    tasks = [t for t in a.tasks.split(",") if t]
    results = summarise(results, work, tasks)
    meta = {
        "command": "python scripts/make_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model_name": a.model_name, "layer_intervals": a.layer_intervals, "best_layer": record["best_layer"],
        "scores": record["scores"], "block_influence": record["block_influence"],
        "shortgpt_layers": lowest_influence_layers(record["block_influence"], a.layer_intervals),
        "limit": a.limit, "eval_source": a.eval_data_dir or "lm-eval Hub tasks", "tasks": tasks,
        "ppl_data_path": a.ppl_data_path, "ppl_tokens": int(ppl_data.numel()), "data_path": a.data_path,
        "seq_len": a.seq_len, "train_num_data": a.train_num_data, "llm_train_num_data": a.llm_train_num_data,
        "cosine_num_data": a.cosine_num_data, "num_test_blocks": a.num_test_blocks, "seed": a.seed,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU",
        "date": time.strftime("%Y-%m-%d %H:%M"), "wall_minutes": round((time.time() - t0) / 60, 1), "note": a.note,
        "row_eval_seconds": {row: r.get("eval_seconds") for row, r in results.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "table.json", {"meta": meta, "rows": results})
    atomic_write_text(out / "table.md", markdown(results, meta, tasks))
    plot_scores(record, out / "cosine_scores.png")
    print((out / "table.md").read_text())
    return results
