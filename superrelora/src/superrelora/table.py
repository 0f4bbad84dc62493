"""The README's table at CPU scale: 7 rows on the embedded SmolLM2-135M-Instruct, same seed and data order.

Each row runs in a fresh subprocess (so peak RSS is per method), writes ``runs/table/<row>/row.json``; the
aggregate goes to ``results/table.{md,json}``, ``results/loss_curve.png`` and ``results/rank_spectra.png``.

    python scripts/make_table.py                      # scale "default" (make table)
    python scripts/make_table.py --scale small        # the reduced run committed in results/
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from shared_utils.runs import atomic_write_json, atomic_write_text

DEFAULT_DATA = "../../shared/data/wikitext2/raw/wiki.test.raw"
ROWS = {
    "base": ("Base (not trained)", {}),
    "full": ("Full FT", {"method": "full"}),
    "lora": ("LoRA", {"method": "lora", "merge_every": 0}),
    "relora": ("ReLoRA", {"method": "relora", "scheduler.type": "jagged_cosine"}),
    "superrelora": ("SuperReLoRA (exact)", {"method": "superrelora"}),
    "superrelora_ref": ("SuperReLoRA (reference formula)",
                        {"method": "superrelora", "merge_split": "reference", "merge_moments": "reference"}),
    "as_run": ("README-as-run", {"method": "as_run", "merge_every": 0}),
}
# README proportions (1722 updates, merges at 500/1000/1500 = 3 merges at alpha 0.1), scaled down.
SCALES = {
    "default": {"max_steps": 48, "merge_every": 16, "batch_size": 8, "max_length": 48, "eval_max_length": 48,
                "num_eval_samples": 100, "scheduler.warmup_steps": 0, "scheduler.restart_warmup_steps": 3},
    "tiny": {"model_name": "configs/tiny_llama.json", "max_steps": 4, "merge_every": 2, "batch_size": 2,
             "max_length": 24, "eval_max_length": 24, "num_eval_samples": 8, "scheduler.warmup_steps": 0,
             "scheduler.restart_warmup_steps": 1, "limit_train_examples": 16},
    "small": {"max_steps": 15, "merge_every": 5, "batch_size": 4, "max_length": 32, "eval_max_length": 32,
              "num_eval_samples": 32, "scheduler.warmup_steps": 0, "scheduler.restart_warmup_steps": 2},
}
COMMON = {"model_name": "smollm2-135m", "lora_r": 8, "lora_alpha": 16, "merge_alpha": 0.1, "learning_rate": 2e-4,
          "weight_decay": 0.01, "eval_batch_size": 16, "seed": 42, "logging_steps": 1, "track_merge_logits": True,
          "legacy_eval": True, "num_epochs": 1}


def row_config(name: str, scale: str, data: str, out_root: str | Path):
    from superrelora.config import load_config

    overrides = {**COMMON, **SCALES[scale], "dataset_name": data, "output_dir": str(Path(out_root) / name)}
    overrides.update(ROWS[name][1])
    if name == "relora":  # ReLoRA's cosine has a first warmup of ~10 % of the run
        overrides["scheduler.warmup_steps"] = max(1, SCALES[scale]["max_steps"] // 10)
    return load_config(None, overrides)


def run_row(name: str, scale: str, data: str, out_root: str | Path) -> dict:
    """Train + evaluate one row in this process; write ``<out_root>/<name>/row.json``."""
    import resource

    from shared_utils.runs import seed_everything
    from superrelora.evaluate import evaluate_text
    from superrelora.model import load_base_model
    from superrelora.ranks import mean_spectrum, rank_report
    from superrelora.train import prepare, run_training

    cfg = row_config(name, scale, data, out_root)
    t0 = time.perf_counter()
    if name == "base":
        setup = prepare(cfg)
        res = evaluate_text(setup.model.get_base_model() if hasattr(setup.model, "get_base_model") else setup.model,
                            setup.tokenizer, setup.eval_text, cfg.eval_max_length, cfg.eval_batch_size, legacy=True)
        row = {"trainable_params": 0, "steps": 0, "merges": 0, **{f"eval_{k}": v for k, v in res.items()}}
    else:
        summary = run_training(cfg, export=False)
        setup = summary.pop("_setup")
        seed_everything(cfg.seed)  # a base drawn from a config file is re-drawn identically
        report = rank_report(setup.model, load_base_model(cfg.model_name), cfg.target_modules)
        row = {**summary, "rank": report["summary"], "spectrum": mean_spectrum(report)}
    from superrelora.evaluate import per_row_nll

    row["eval_rows"] = per_row_nll(setup.model, setup.tokenizer, setup.eval_text, cfg.eval_max_length,
                                   cfg.eval_batch_size)
    row.update({"row": name, "label": ROWS[name][0], "wall_s": time.perf_counter() - t0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    atomic_write_json(Path(out_root) / name / "row.json", row)
    return row


def run_all(scale: str, data: str, out_root: str | Path, rows: list[str] | None = None, script: str = "",
            threads: int | None = None) -> list[dict]:
    """Each row in a fresh subprocess (fair peak memory, no state leaking between rows)."""
    import os

    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    out = []
    for name in rows or list(ROWS):
        cmd = [sys.executable, script, "--row", name, "--scale", scale, "--data", data, "--out_root", str(out_root)]
        print(f"[table] {name}: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"row {name} failed (exit {proc.returncode})")
        out.append(json.loads((Path(out_root) / name / "row.json").read_text()))
    return out


def _fmt(v, nd=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) < 1e5 else f"{v:.3g}"
    return str(v)


def render(rows: list[dict], meta: dict) -> str:
    head = ("| Method | Trainable params | Train loss (mean) | Final train loss | Eval loss | Perplexity | Accuracy "
            "| Stream ppl | Legacy-eval loss / ppl | Peak RSS (MB) | Steps/s | Merges | Max abs dlogit at merge "
            "| Eff. rank dW (median) | Num. rank dW (median) |")
    lines = [head, "|" + "|".join(["---"] * 15) + "|"]
    for r in rows:
        total = r.get("total_params") or 134515008
        tp = r.get("trainable_params", 0)
        rank = r.get("rank") or {}
        lines.append("| " + " | ".join([
            r["label"], f"{tp:,} ({100 * tp / total:.2f} %)" if tp else "0",
            _fmt(r.get("train_loss")), _fmt(r.get("final_train_loss")), _fmt(r.get("eval_loss")),
            _fmt(r.get("eval_perplexity"), 2), _fmt(r.get("eval_accuracy")), _fmt(r.get("eval_stream_perplexity"), 2),
            f"{_fmt(r.get('eval_legacy_loss'))} / {_fmt(r.get('eval_legacy_perplexity'), 1)}",
            f"{r.get('peak_rss_mb', 0):.0f}", _fmt(r.get("steady_steps_per_second"), 3), str(r.get("merges", 0)),
            _fmt(r.get("max_logit_change"), 6), _fmt(rank.get("effective_rank"), 2), _fmt(rank.get("numerical_rank"), 1),
        ]) + " |")
    meta_lines = [f"- {k}: {v}" for k, v in meta.items()]
    return "\n".join(["# SuperReLoRA table (CPU scale)", "", *meta_lines, "", *lines, ""])


def aggregate(rows: list[dict], meta: dict, results: str | Path, out_root: str | Path) -> None:
    from superrelora.plots import plot_losses
    from superrelora.ranks import plot_spectra

    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != "spectrum"} for r in rows]
    # "runs", not "rows": the per-run record; the EVIDENCE.md table with intervals is smollm2_table.json
    atomic_write_json(results / "table.json", {"meta": meta, "runs": [{k: v for k, v in r.items() if k != "eval_rows"}
                                                                     for r in slim]})
    atomic_write_text(results / "table.md", render(rows, meta))
    runs = {r["label"]: Path(out_root) / r["row"] for r in rows if r["row"] != "base"}
    plot_losses(runs, results / "loss_curve.png", smooth=3)
    spectra = {r["label"]: r.get("spectrum") for r in rows if r.get("spectrum")}
    plot_spectra(spectra, results / "rank_spectra.png", r=8)


def machine() -> str:
    import os

    return f"{platform.platform()}, {os.cpu_count()} CPU cores, python {platform.python_version()}"


def evidence_table(rows: list[dict], meta: dict, results: str | Path) -> dict:
    """results/smollm2_table.{json,md} in the EVIDENCE.md shape: eval loss / perplexity / accuracy with bootstrap
    intervals over the validation rows (one seed), paired comparisons on the same rows."""
    import math

    import numpy as np

    from shared_utils import stats

    def loss_of(e):
        return float(e[:, 0].sum() / e[:, 1].sum())

    t = stats.ResultsTable(table="smollm2_table", command=meta["command"], preset="cpu",
                           scale=meta["scale"], data=meta["data"], model=meta["model"])
    ev = {}
    for r in rows:
        if "eval_rows" not in r:
            continue
        e = ev[r["row"]] = np.array(r["eval_rows"])
        loss = stats.bootstrap_fn(loss_of, e)
        t.add(r["label"], "perplexity", {**loss, "mean": math.exp(loss["mean"]),
                                         "ci95": [math.exp(v) for v in loss["ci95"]]},
              steps=r.get("steps"), merges=r.get("merges"), trainable_params=r.get("trainable_params"),
              max_abs_dlogit_at_merge=r.get("max_logit_change"),
              effective_rank_dW=(r.get("rank") or {}).get("effective_rank"),
              steps_per_second=r.get("steady_steps_per_second"))
        t.add(r["label"], "eval_loss", loss)
        t.add(r["label"], "accuracy", stats.bootstrap_fn(lambda x: float(x[:, 2].sum() / x[:, 1].sum()), e))
    labels = {k: v[0] for k, v in ROWS.items()}
    lines = []
    for a, b in [("superrelora", "lora"), ("superrelora", "relora"), ("superrelora", "superrelora_ref"),
                 ("full", "lora"), ("lora", "base")]:
        if a in ev and b in ev:
            c = stats.as_comparison(stats.bootstrap_fn(lambda x, y: loss_of(x) - loss_of(y), ev[a], ev[b]))
            t.compare(labels[a], labels[b], "eval_loss", c)
            lines.append(stats.verdict_line(labels[a], labels[b], "eval_loss", c, higher_is_better=False))
    t.verdict = "; ".join(lines) or "no comparisons"
    t.notes += [f"Pipeline check on the real SmolLM2-135M-Instruct, one seed, {meta['scale']}: intervals are over "
                "the validation rows only (bootstrap of the token-weighted loss), not over seeds.",
                "Row fields (steps, merges, max |dlogit| at a merge, effective rank of dW, steps/s) are in the JSON."]
    t.wall_s = meta.get("wall_minutes", 0) * 60
    t.write(Path(results) / "smollm2_table")
    return t.to_dict()
