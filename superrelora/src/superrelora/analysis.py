"""Helpers behind notebooks/check_ranks.ipynb and notebooks/plot_loss.ipynb (kept here so tests cover them).

    python -c "from superrelora.analysis import find_runs; print(find_runs('runs/table_small'))"
"""

from __future__ import annotations

import json
from pathlib import Path

from shared_utils.runs import seed_everything
from superrelora.checkpoint import load_final_model
from superrelora.model import load_base_model
from superrelora.ranks import mean_spectrum, rank_report


def find_runs(root: str | Path) -> dict[str, Path]:
    """{method label: run dir} for finished runs (with final_model/) under ``root``."""
    root = Path(root)
    runs = {}
    for d in sorted(root.glob("*")):
        if (d / "final_model").is_dir() and (d / "config.json").is_file():
            runs[d.name] = d
    return runs


def demo_runs(root: str | Path = "runs/notebook_demo") -> dict[str, Path]:
    """Two tiny runs (SuperReLoRA with merges, plain LoRA) so the notebooks work on a fresh clone in seconds."""
    from superrelora.config import load_config
    from superrelora.train import run_training

    root = Path(root)
    for method, every in (("superrelora", 2), ("lora", 0)):
        if not (root / method / "final_model").is_dir():
            cfg = load_config("training_configs/tiny_cpu.yaml", {
                "method": method, "merge_every": every, "merge_alpha": 0.5, "lora_r": 2, "max_steps": 8,
                "output_dir": str(root / method), "dataset_name": "tests/data/tiny_corpus.txt", "num_eval_samples": 16})
            run_training(cfg, export=False, evaluate=False).pop("_setup")
    return find_runs(root)


def rank_table(runs: dict[str, Path]) -> dict[str, dict]:
    """Rank statistics of dW for each run (reloaded from disk, merge-modified base weights included)."""
    out = {}
    for label, run in runs.items():
        cfg = json.loads((Path(run) / "config.json").read_text())
        seed_everything(cfg["seed"])  # a base drawn from a config file is re-drawn identically
        original = load_base_model(cfg["model_name"])
        seed_everything(cfg["seed"])
        model = load_final_model(cfg["model_name"], Path(run), base=load_base_model(cfg["model_name"]))
        report = rank_report(model, original, cfg["target_modules"])
        out[label] = {"summary": report["summary"], "spectrum": mean_spectrum(report),
                      "r": cfg["lora_r"], "method": cfg["method"]}
    return out


def format_rank_table(table: dict[str, dict]) -> str:
    lines = ["| run | method | numerical rank | effective rank | stable rank | r90 |", "|---|---|---|---|---|---|"]
    for label, t in table.items():
        s = t["summary"]
        lines.append(f"| {label} | {t['method']} | {s['numerical_rank']} | {s['effective_rank']:.2f} | "
                     f"{s['stable_rank']:.2f} | {s['r90']} |")
    return "\n".join(lines)
