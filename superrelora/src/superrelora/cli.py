"""Command line of ``scripts/train_superrelora.py``: ``--config`` YAML, ``--use_trainer``, and ``--<key> value`` for
every config key (``--scheduler.type cosine`` for nested ones). Flags given on the command line override the YAML.

    python scripts/train_superrelora.py --config training_configs/superrelora_160m.yaml --use_trainer
"""

from __future__ import annotations

import argparse
import json
import os

import yaml

from superrelora.config import cli_keys, load_config
from superrelora.preflight import preflight


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train SuperReLoRA / LoRA / ReLoRA / full fine-tuning (README surface).")
    p.add_argument("--config", help="training YAML (every key below may be set there)")
    p.add_argument("--use_trainer", action="store_true", default=None, help="HF Trainer path (else the manual loop)")
    p.add_argument("--use_base_model", action="store_true", default=None, help="train the raw model (full FT)")
    p.add_argument("--legacy_eval", action="store_true", default=None, help="also report the original's buggy eval")
    p.add_argument("--no_export", action="store_true", help="skip the merged_model/ export")
    for key in cli_keys():
        if key not in ("use_trainer", "use_base_model", "legacy_eval"):
            p.add_argument(f"--{key}", default=None, metavar="V", help=argparse.SUPPRESS)
    return p


def parse(argv=None):
    """(TrainConfig, namespace): YAML values, then command-line overrides (parsed as YAML scalars)."""
    args = parser().parse_args(argv)
    overrides = {}
    for key in cli_keys():
        value = getattr(args, key, None)
        if value is None:
            continue
        overrides[key] = yaml.safe_load(value) if isinstance(value, str) else value
    return load_config(args.config, overrides), args


def main(argv=None) -> dict:
    os.environ.setdefault("WANDB_MODE", "disabled")  # as the original script did
    cfg, args = parse(argv)  # validate first: a bad flag fails before torch/transformers are imported
    preflight(cfg)  # output dir, model name, data, resume checkpoint: one line before the slow imports
    from superrelora.train import run_training

    summary = run_training(cfg, export=not args.no_export)
    summary.pop("_setup", None)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=1, default=str))
    return summary
