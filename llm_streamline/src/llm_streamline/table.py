"""The README table with intervals: original vs block removed vs ShortGPT vs Streamline rows, and a pruning curve.

    python scripts/make_table.py --preset cpu --eval_data_dir ../../shared/data      # = make table
    python scripts/make_table.py --preset gpu --eval_data_dir ../../shared/data      # = make table PRESET=gpu
    python scripts/make_table.py --preset gpu --dry_run                              # the plan, nothing run

Rows at n = ``layer_intervals``: original, block removed without training (Ours-None), ShortGPT (the n layers with
the lowest Block Influence), and the Streamline rows trained by the real entry points (MSE loss, LLM loss, MSE loss
without token 0, FFN). Every row: WikiText-2 test perplexity from per-token NLLs (interval: block bootstrap, one
block = one ``ppl_seq_len`` sequence), lm-eval 0-shot ``acc`` per task (bootstrap over examples), their average and
the retention (pruned average / original average, bootstrap over the same examples for both models). Paired
comparisons of each Streamline row with ShortGPT and with plain removal: NLL difference on the same tokens
(block bootstrap) and accuracy difference on the same examples. Pruning curve: original, ShortGPT and one
Streamline row at every n of ``curve_n``; that row is chosen before any test number is seen, by the lowest NLL on
the held-out *validation* blocks of the training text (``curve_row auto``) or named.

Resumable: every training run (``work_dir/n<n>/<row>``) and every evaluation (``work_dir/n<n>/eval/<row>``) is kept
and skipped on a re-run; ``results/`` is written only when every job of the preset is done.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llm_streamline.evaluate import TABLE_TASKS, lm_eval_samples, ppl_blocks, sample_accuracies, token_nlls
from llm_streamline.pipeline import RECORD, load_streamlined
from llm_streamline.selection import lowest_influence_layers
from llm_streamline.stability import directory_stability
from llm_streamline.surgery import count_params, drop_layers, streamline_model
from shared_utils import stats
from shared_utils.errors import UserError
from shared_utils.runs import atomic_write_json, seed_everything

ROWS = {
    "original": "original",
    "none": "block removed, no training (Ours-None)",
    "shortgpt": "ShortGPT (drop n lowest-BI layers)",
    "mse": "Streamline, MSE loss (layer)",
    "llm": "Streamline, LLM loss (layer)",
    "mse_nosink": "Streamline, MSE loss without token 0 (layer)",
    "ffn": "Streamline, MSE loss (FFN)",
}
TRAINED = ("mse", "llm", "mse_nosink", "ffn")
# 4 of the paper's 7 tasks, chosen before any result: SmolLM2-135M's model card puts it clearly above chance on
# these (ARC, HellaSwag, OpenBookQA), while BoolQ (majority class 62%), RTE and WinoGrande sit at chance for
# 135M models and would show no retention signal; the four also have the shortest requests per example but
# HellaSwag (the one long-context task kept).
CPU_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "openbookqa")
PRESETS = {
    "cpu": dict(tasks=",".join(CPU_TASKS), limit=100, ppl_blocks=65, ppl_seq_len=256, curve_n="4,12", curve_tasks=False,
                train_num_data=128, llm_train_num_data=96, mse_epochs=3, llm_epochs=1, device="cpu",
                eval_batch_size=16, rows=",".join(ROWS)),
    # All 8 tasks on their full splits, the whole WikiText-2 test set, n in {4..12}; bf16 on one GPU.
    # Accuracy along the curve (--curve_tasks) roughly doubles the lm-eval work (~70k requests per row); off here
    # to stay near 5 minutes. Not run yet: the sizing is an estimate.
    "gpu": dict(tasks=",".join(TABLE_TASKS), limit=0, ppl_blocks=0, ppl_seq_len=1024, curve_n="4,6,10,12",
                curve_tasks=False, train_num_data=512, llm_train_num_data=512, mse_epochs=3, llm_epochs=1,
                device="cuda", eval_batch_size=128, rows=",".join(ROWS)),
    # A few minutes on CPU: perplexity only, small training (what this session's budget allowed).
    "cpu_ppl": dict(tasks="", limit=100, ppl_blocks=65, ppl_seq_len=256, curve_n="4,12", curve_tasks=False,
                    train_num_data=128, llm_train_num_data=96, mse_epochs=3, llm_epochs=1, device="cpu",
                    eval_batch_size=16, rows=",".join(ROWS)),
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--model_name", default="smollm2-135m")
    p.add_argument("--layer_intervals", type=int, default=8)
    p.add_argument("--data_path", default="embedded", help="training/calibration text (e.g. wikitext2/valid.txt)")
    p.add_argument("--ppl_data_path", default="embedded", help="perplexity text (wikitext2/raw/wiki.test.raw)")
    p.add_argument("--eval_data_dir", default=None, help="local lm-eval task copies (../../shared/data); none: Hub tasks")
    p.add_argument("--tasks", default=None, help="comma list; '' = perplexity only")
    p.add_argument("--limit", type=int, default=None, help="first N examples of each task (0 = all)")
    p.add_argument("--rows", default=None)
    p.add_argument("--curve_n", default=None, help="other n of the pruning curve, e.g. 4,12 ('' = none)")
    p.add_argument("--curve_tasks", action="store_const", const=True, default=None,
                   help="also run lm-eval at every n of the curve (accuracy along the curve)")
    p.add_argument("--curve_row", default="auto", help="Streamline row of the curve; auto = lowest validation NLL")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--cosine_num_data", type=int, default=16)
    p.add_argument("--train_num_data", type=int, default=None, help="MSE training blocks")
    p.add_argument("--llm_train_num_data", type=int, default=None, help="LLM-loss training blocks")
    p.add_argument("--num_test_blocks", type=int, default=16, help="held-out validation blocks of the training text")
    p.add_argument("--mse_epochs", type=int, default=None)
    p.add_argument("--llm_epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-4, help="peak lr of both trainings (original 2e-4; few steps here)")
    p.add_argument("--ppl_seq_len", type=int, default=None)
    p.add_argument("--ppl_blocks", type=int, default=None, help="0 = the whole text")
    p.add_argument("--eval_batch_size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work_dir", default="runs/table")
    p.add_argument("--out_dir", default="results")
    p.add_argument("--num_threads", type=int, default=0)
    p.add_argument("--note", default="", help="free text added to the table notes")
    p.add_argument("--dry_run", action="store_true", help="print the resolved plan and exit")
    p.add_argument("--assemble_only", action="store_true",
                   help="run nothing: write results/ from finished jobs (error naming any job not finished)")
    a = p.parse_args(argv)
    for key, value in PRESETS[a.preset].items():
        if getattr(a, key, None) is None:
            setattr(a, key, value)
    a.task_list = [t for t in a.tasks.split(",") if t]
    a.row_list = [r for r in a.rows.split(",") if r]
    a.curve = [int(x) for x in str(a.curve_n).split(",") if x.strip()]
    unknown = [r for r in a.row_list if r not in ROWS] + [t for t in a.task_list if t not in TABLE_TASKS]
    if unknown:
        raise UserError(f"unknown table rows / tasks {unknown} (rows: {', '.join(ROWS)}; tasks: {', '.join(TABLE_TASKS)})")
    if a.curve_row != "auto" and a.curve_row not in TRAINED:
        raise UserError(f"--curve_row must be auto or one of {', '.join(TRAINED)}, got {a.curve_row}")
    for name in ("layer_intervals", "seq_len", "cosine_num_data", "train_num_data", "llm_train_num_data",
                 "num_test_blocks", "mse_epochs", "llm_epochs", "ppl_seq_len", "eval_batch_size"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(a, name)}")
    if a.limit < 0 or a.ppl_blocks < 0 or any(n < 1 for n in a.curve):
        raise UserError("--limit, --ppl_blocks must be >= 0 and every --curve_n >= 1")
    for flag, path in (("--eval_data_dir", a.eval_data_dir), ("--ppl_data_path", a.ppl_data_path),
                       ("--data_path", a.data_path)):
        if path and path != "embedded" and not Path(path).expanduser().exists():
            raise UserError(f"{flag} {path} does not exist")
    if Path(a.out_dir).is_file():
        raise UserError(f"--out_dir {a.out_dir} is a file")
    return a


# ------------------------------------------------------------------------------------------------ plan and training
def plan(a) -> list[tuple[str, int, str]]:
    """Jobs in order: ("train" | "eval", n, row); row by row (a row's training, then its evaluation), so that an
    interrupted run has whole rows."""
    n8 = a.layer_intervals
    jobs = []
    for r in a.row_list:
        jobs += ([("train", n8, r)] if r in TRAINED else []) + [("eval", n8, r)]
    trained = [j for j in jobs if j[0] == "train"]
    if trained:  # the first trained row's run also yields the selection (block, Block Influence) of none/shortgpt
        jobs.remove(trained[0])
        jobs.insert(0, trained[0])
    for n in a.curve:
        if n == n8:
            continue
        jobs += [("train", n, "curve"), ("eval", n, "shortgpt"), ("eval", n, "curve")]
    return jobs


def train_argv(a, row: str, n: int, out: Path) -> list[str]:
    kind = "ffn" if row == "ffn" else "layer"
    extra = ["--mse_loss_start", "1"] if row == "mse_nosink" else []
    common = ["--model_name", a.model_name, "--data_path", a.data_path, "--layer_intervals", str(n),
              "--seq_len", str(a.seq_len), "--cosine_num_data", str(a.cosine_num_data), "--num_test_blocks",
              str(a.num_test_blocks), "--seed", str(a.seed), "--lr", str(a.lr), "--output_dir", str(out),
              "--lightweight", kind, "--device", a.device, "--num_threads", str(a.num_threads), *extra]
    if row == "llm":
        return common + ["--train_num_data", str(a.llm_train_num_data), "--batch_size", "4",
                         "--gradient_accumulation_step", "2", "--epoches", str(a.llm_epochs)]
    return common + ["--train_num_data", str(a.train_num_data), "--batch_size", "8", "--gradient_accumulation_step",
                     "2", "--epoches", str(a.mse_epochs)]


def train(a, row: str, n: int, work: Path) -> dict:
    from llm_streamline import llm_train, mse_train

    out = work / f"n{n}" / row
    if not (out / RECORD).is_file():
        t0 = time.time()
        (llm_train if row == "llm" else mse_train).run(train_argv(a, row, n, out))
        atomic_write_json(out.parent / f"{row}.train_seconds.json", {"seconds": round(time.time() - t0, 1)})
        print(f"[table] trained {row} at n={n} in {time.time() - t0:.0f} s", flush=True)
    return json.loads((out / RECORD).read_text())


def selection_record(work: Path, n: int, prefer=()) -> dict:
    """Selection (best block, scores, Block Influence) saved by the first trained row at n (``prefer`` order)."""
    for row in [r for r in prefer if r in TRAINED] + list(TRAINED):
        path = work / f"n{n}" / row / RECORD
        if path.is_file():
            return json.loads(path.read_text())
    raise UserError(f"no trained Streamline row at n={n} under {work} (its selection record is needed)")


def curve_row(a, work: Path) -> str:
    """The Streamline row of the pruning curve: named, or lowest validation NLL at the main n (never the test)."""
    if a.curve_row != "auto":
        return a.curve_row
    vals = {}
    for row in TRAINED:
        f = work / f"n{a.layer_intervals}" / "eval" / row / "row.json"
        if f.is_file():
            vals[row] = json.loads(f.read_text())["val_nll"]
    if not vals:
        raise UserError("--curve_row auto needs at least one evaluated Streamline row at the main n")
    return min(vals, key=vals.get)


# ------------------------------------------------------------------------------------------------ evaluation
class Evaluator:
    """Loads the original once; builds, evaluates and caches every (n, row)."""

    def __init__(self, a, work: Path):
        from llm_streamline import data as D
        from shared_utils.models import load_causal_lm, load_tokenizer

        self.a, self.work = a, work
        self.dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
        self.tokenizer = load_tokenizer(a.model_name)
        self.original = load_causal_lm(a.model_name, dtype=self.dtype, device=a.device).eval()
        self.ppl = ppl_blocks(self.tokenizer, a.ppl_data_path, a.ppl_seq_len, a.ppl_blocks or 10**9)
        texts = D.load_texts(a.data_path, "train", seed=a.seed)
        blocks = D.group_texts(texts, self.tokenizer, a.seq_len)
        self.val = D.split_blocks(blocks, a.num_test_blocks, None, a.seed)[1]  # the entries' held-out blocks

    def model(self, row: str, n: int):
        if row == "original":
            return self.original
        rec = selection_record(self.work, n, self.a.row_list)
        if row == "none":
            return streamline_model(self.original, rec["best_layer"], n)
        if row == "shortgpt":
            return drop_layers(self.original, lowest_influence_layers(rec["block_influence"], n))
        return load_streamlined(str(self.work / f"n{n}" / row), dtype=self.dtype)[0].to(self.a.device).eval()

    def evaluate(self, row: str, n: int, tasks: list[str]) -> dict:
        out = self.work / ("original" if row == "original" else f"n{n}") / "eval" / row
        done = out / "row.json"
        if done.is_file():
            return json.loads(done.read_text())
        t0 = time.time()
        model, a = self.model(row, n), self.a
        nll = token_nlls(model, self.ppl, a.eval_batch_size, a.device)
        val = token_nlls(model, self.val, a.eval_batch_size, a.device)
        if tasks:
            lm_eval_samples(model, self.tokenizer, tasks, out, a.eval_data_dir, a.limit or None, a.eval_batch_size,
                            a.device)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "token_nll.npy", nll)
        result = {"row": row, "n": 0 if row == "original" else n, "layers": model.config.num_hidden_layers,
                  "params": count_params(model), "ppl": float(math.exp(nll.mean())), "val_nll": float(val.mean()),
                  "tasks": tasks, "eval_seconds": round(time.time() - t0, 1)}
        atomic_write_json(done, result)
        print(f"[table] {row} n={n}: ppl {result['ppl']:.2f}, val nll {result['val_nll']:.3f}, "
              f"{result['eval_seconds']} s", flush=True)
        return result


def job_done(work: Path, kind: str, n: int, row: str) -> bool:
    if kind == "train":
        return (work / f"n{n}" / row / RECORD).is_file()
    return (row_dir(work, row, n) / "row.json").is_file()


def row_dir(work: Path, row: str, n: int) -> Path:
    return work / ("original" if row == "original" else f"n{n}") / "eval" / row


# ------------------------------------------------------------------------------------------------ assembly
def accuracies(work: Path, row: str, n: int, tasks: list[str]) -> dict[str, np.ndarray]:
    return {t: np.asarray(sample_accuracies(row_dir(work, row, n), t)) for t in tasks}


def _task_avg(acc: np.ndarray, task_id: np.ndarray, k: int) -> float:
    return float(np.mean([acc[task_id == t].mean() for t in range(k) if np.any(task_id == t)]))


def add_accuracy(table, name: str, acc: dict, orig: dict, tasks: list[str]) -> None:
    for t in tasks:
        table.add(name, t, stats.metric_examples(acc[t]))
    flat = np.concatenate([acc[t] for t in tasks])
    oflat = np.concatenate([orig[t] for t in tasks])
    tid = np.concatenate([np.full(len(acc[t]), i) for i, t in enumerate(tasks)])
    k = len(tasks)
    table.add(name, "avg", stats.bootstrap_fn(lambda x, i: _task_avg(x, i, k), flat, tid))
    table.add(name, "retention", stats.bootstrap_fn(
        lambda x, o, i: _task_avg(x, i, k) / max(_task_avg(o, i, k), 1e-12), flat, oflat, tid))


def nll_comparison(a: np.ndarray, b: np.ndarray, block: int) -> dict:
    m = stats.block_bootstrap_metric(a - b, block=block)
    return stats.as_comparison(m)


def acc_comparison(acc: dict, other: dict, tasks: list[str]) -> dict:
    return stats.paired_diff(np.concatenate([acc[t] for t in tasks]), np.concatenate([other[t] for t in tasks]))


def load_nll(work: Path, row: str, n: int) -> np.ndarray:
    return np.load(row_dir(work, row, n) / "token_nll.npy")


def main_table(a, work: Path, command: str, wall: float) -> stats.ResultsTable:
    n, tasks, block = a.layer_intervals, a.task_list, a.ppl_seq_len - 1
    rec = selection_record(work, n, a.row_list)
    t = stats.ResultsTable(table="llm_streamline_table", command=command, preset=a.preset,
                           model=a.model_name, layer_intervals=n, best_layer=rec["best_layer"],
                           shortgpt_layers=lowest_influence_layers(rec["block_influence"], n), scores=rec["scores"])
    t.wall_s = job_seconds(work, a.row_list, [n]) or wall
    nlls = {r: load_nll(work, r, n) for r in a.row_list}
    accs = {r: accuracies(work, r, n, tasks) for r in a.row_list} if tasks else {}
    for r in a.row_list:
        info = json.loads((row_dir(work, r, n) / "row.json").read_text())
        name = ROWS[r]
        t.add(name, "perplexity", stats.block_bootstrap_metric(nlls[r], block=block, fn=math.exp),
              layers=info["layers"], params=info["params"], val_nll=info["val_nll"], **train_fields(work, r, n, a))
        if tasks:
            add_accuracy(t, name, accs[r], accs["original"], tasks)
            if r != "original":
                t.add_row_fields(name, stability=float(np.mean(list(
                    directory_stability(row_dir(work, "original", n), row_dir(work, r, n)).values()))))
    for r in [x for x in a.row_list if x in TRAINED]:
        for base in ("shortgpt", "none"):
            if base in a.row_list:
                t.compare(ROWS[r], ROWS[base], "nll", nll_comparison(nlls[r], nlls[base], block))
                if tasks:
                    t.compare(ROWS[r], ROWS[base], "avg", acc_comparison(accs[r], accs[base], tasks))
    scale = (f"SmolLM2-135M, n={n} of 30 layers; perplexity on {nlls['original'].size} predicted WikiText-2 test "
             f"tokens" + (f"; lm-eval 0-shot acc on the first {a.limit or 'all'} examples of {', '.join(tasks)}"
                          if tasks else "; no lm-eval accuracy at this scale"))
    t.auto_verdict(higher_is_better={"nll": False, "avg": True}, prefix=f"At this scale ({scale}):")
    t.notes += [
        scale + f". Training text {a.data_path} ({a.seq_len}-token blocks): MSE rows {a.train_num_data} blocks x "
        f"{a.mse_epochs} epochs, LLM-loss row {a.llm_train_num_data} blocks x {a.llm_epochs} epoch, lr {a.lr}; "
        "tokens seen and the final training / validation losses are row fields in the JSON "
        "(`train_tokens`, `loss_first`, `loss_last`); curves in training_curves.png.",
        "`wall_s` = sum of the recorded wall times of the training runs and row evaluations behind this table.",
        "`perplexity`: exp of the mean token NLL, 95% block bootstrap (blocks = one evaluation sequence). "
        "Comparisons on `nll` are paired per-token NLL differences (a - b, negative = a better) on the same tokens. "
        + ("Task cells: acc with a bootstrap over examples; `avg` = mean over the tasks; `retention` = avg / "
           "original avg, bootstrapped over the same examples for both; `avg` comparisons are paired on the same "
           "examples. `stability` (row field) = mean over tasks of the intended formula." if tasks else ""),
        f"ShortGPT drops layers {lowest_influence_layers(rec['block_influence'], n)}; the Streamline block is "
        f"{rec['best_layer']}..{rec['best_layer'] + n} (cosine scores in cosine_scores.png).",
    ] + ([a.note] if a.note else [])
    return t


def job_seconds(work: Path, rows, ns) -> float:
    """Sum of the recorded wall times of every training run and row evaluation behind a table."""
    total = 0.0
    for n in ns:
        for r in rows:
            f = row_dir(work, r, n) / "row.json"
            total += json.loads(f.read_text()).get("eval_seconds", 0.0) if f.is_file() else 0.0
            t = work / f"n{n}" / f"{r}.train_seconds.json"
            total += json.loads(t.read_text())["seconds"] if t.is_file() else 0.0
    return round(total, 1)


def train_fields(work: Path, row: str, n: int, a) -> dict:
    if row not in TRAINED:
        return {}
    rec = json.loads((work / f"n{n}" / row / RECORD).read_text())
    h = rec.get("history", {})
    loss = h.get("train_loss") or h.get("train_mse") or []
    val = h.get("val_loss") or h.get("val_mse") or []
    blocks = rec.get("train_blocks", 0)
    return {"train_tokens": int(blocks * rec["seq_len"] * rec["epoches"]), "loss_first": loss[0] if loss else None,
            "loss_last": loss[-1] if loss else None, "val_loss_curve": val,
            "loss_kind": "LM loss" if row == "llm" else "MSE"}


def curve_table(a, work: Path, command: str, wall: float, crow: str) -> stats.ResultsTable:
    ns = sorted(set(a.curve) | {a.layer_intervals})
    t = stats.ResultsTable(table="llm_streamline_pruning_curve", command=command, preset=a.preset,
                           curve_row=crow, n_values=ns)
    t.wall_s = job_seconds(work, ["original", "shortgpt", crow], ns) or wall
    block = a.ppl_seq_len - 1
    tasks = a.task_list if a.curve_tasks else []
    orig_acc = accuracies(work, "original", a.layer_intervals, tasks) if tasks else {}
    t.add("original", "perplexity", stats.block_bootstrap_metric(load_nll(work, "original", 0), block=block,
                                                                 fn=math.exp), n=0)
    if tasks:
        add_accuracy(t, "original", orig_acc, orig_acc, tasks)
    for n in ns:
        for r in ("shortgpt", crow):
            name = f"{ROWS[r]}, n={n}"
            t.add(name, "perplexity", stats.block_bootstrap_metric(load_nll(work, r, n), block=block, fn=math.exp), n=n)
            if tasks:
                add_accuracy(t, name, accuracies(work, r, n, tasks), orig_acc, tasks)
        t.compare(f"{ROWS[crow]}, n={n}", f"{ROWS['shortgpt']}, n={n}", "nll",
                  nll_comparison(load_nll(work, crow, n), load_nll(work, "shortgpt", n), block))
    t.auto_verdict(higher_is_better={"nll": False},
                   prefix=f"Pruning curve ({ROWS[crow]} chosen by validation NLL at n={a.layer_intervals}):")
    t.notes.append(f"n = layers removed of 30; perplexity on {load_nll(work, 'original', 0).size} predicted "
                   "WikiText-2 test tokens, 95% block bootstrap; comparisons: paired per-token NLL differences.")
    return t


def plot_curve(table: stats.ResultsTable, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.to_dict()["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    orig = rows[0]["metrics"]["perplexity"]
    ax.axhline(orig["mean"], color="k", lw=1, ls="--", label="original")
    for i, prefix in enumerate(sorted({r["method"].rsplit(", n=", 1)[0] for r in rows[1:]})):
        pts = sorted((r["n"], r["metrics"]["perplexity"]) for r in rows[1:] if r["method"].startswith(prefix + ", n="))
        x = [p[0] / 30 for p in pts]
        y = [p[1]["mean"] for p in pts]
        err = [[p[1]["mean"] - p[1]["ci95"][0] for p in pts], [p[1]["ci95"][1] - p[1]["mean"] for p in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=prefix, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xlabel("pruning ratio n / L (L = 30 layers)")
    ax.set_ylabel("WikiText-2 test perplexity (95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(work: Path, a, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in a.row_list:
        f = work / f"n{a.layer_intervals}" / r / RECORD
        if r not in TRAINED or not f.is_file():
            continue
        h = json.loads(f.read_text()).get("history", {})
        ax = axes[1] if r == "llm" else axes[0]
        ax.plot(h.get("train_loss") or h.get("train_mse"), label=ROWS[r], lw=1)
    axes[0].set(yscale="log", xlabel="micro-batch", ylabel="training MSE", title="MSE-loss rows")
    axes[1].set(xlabel="micro-batch", ylabel="LM loss", title="LLM-loss row")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    a = parse(argv)
    command = "python scripts/make_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    jobs = plan(a)
    if a.dry_run:
        print(json.dumps({k: v for k, v in vars(a).items() if k != "dry_run"}, indent=1, default=str))
        for job in jobs:
            print("[plan]", *job)
        return {"jobs": jobs}
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--preset {a.preset} needs CUDA (--device {a.device}); use --dry_run to see its plan")
    t0 = time.time()
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    seed_everything(a.seed)
    work, out = Path(a.work_dir) / a.preset, Path(a.out_dir)
    evaluator, crow = None, None
    if a.assemble_only:
        missing = [f"{k} n={n} {r}" for k, n, r in jobs if r != "curve" and not job_done(work, k, n, r)]
        if missing:
            raise UserError(f"--assemble_only: {len(missing)} job(s) not finished under {work}: {', '.join(missing)}")
        jobs = [j for j in jobs if j[2] == "curve"]  # resolved below; each is done or reported missing
    for kind, n, row in jobs:
        if row == "curve":
            crow = crow or curve_row(a, work)
            row = crow
        if a.assemble_only and not job_done(work, kind, n, row):
            raise UserError(f"--assemble_only: {kind} n={n} {row} is not finished under {work}")
        if kind == "train":
            train(a, row, n, work)
            continue
        evaluator = evaluator or Evaluator(a, work)
        tasks = a.task_list if (n == a.layer_intervals or a.curve_tasks) else []
        evaluator.evaluate(row, n, tasks)
    wall = round(time.time() - t0, 1)
    main = main_table(a, work, command, wall)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if a.preset == "cpu" else f"_{a.preset}"
    main.write(out / f"table{suffix}")
    plot_scores(selection_record(work, a.layer_intervals, a.row_list), out / f"cosine_scores{suffix}.png")
    plot_training(work, a, out / f"training_curves{suffix}.png")
    result = {"table": main.to_dict()}
    if a.curve:
        crow = crow or curve_row(a, work)
        curve = curve_table(a, work, command, wall, crow)
        curve.write(out / f"pruning_curve{suffix}")
        plot_curve(curve, out / f"pruning_curve{suffix}.png")
        result["curve"] = curve.to_dict()
    print((out / f"table{suffix}.md").read_text())
    return result
