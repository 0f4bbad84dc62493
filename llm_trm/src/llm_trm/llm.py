"""Frozen-LLM loading (lazy), device choice, and the metrics tracker (local JSONL always, wandb when asked).

    python -c "from llm_trm.llm import model_hidden_size; print(model_hidden_size('smollm2-135m'))"
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from shared_utils.models import load_causal_lm, pick_device, resolve_model_path


def pick_run_device(pref: str) -> torch.device:
    return pick_device(pref)


def model_hidden_size(model_name: str) -> int:
    """Hidden size D from the model config (the original's README said 3072; SmolLM3-3B is really 2048)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(resolve_model_path(model_name)).hidden_size)


class LazyLLM:
    """Loads the frozen LLM on first ``get()``: a warm hidden-state cache never pays for loading it."""

    def __init__(self, model_name: str, device: torch.device, model=None):
        self.model_name, self.device, self._model = model_name, device, model

    def get(self):
        if self._model is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            self._model = load_causal_lm(self.model_name, dtype=dtype, device=self.device)
        self._model.eval().requires_grad_(False)
        return self._model


def load_frozen_llm(model_name: str, device: torch.device, model=None) -> LazyLLM:
    return LazyLLM(model_name, device, model)


class Tracker:
    """Metric sink: wandb when asked and installed, else nothing beyond the run's local metrics.jsonl.

    Tests pass a fake with the same ``log`` / ``artifact`` / ``finish`` methods.
    """

    def __init__(self, wandb_run=None):
        self.wandb_run = wandb_run
        self.logged: list[tuple[int, dict]] = []

    @classmethod
    def create(cls, use_wandb: bool, project: str, name: str, config: dict) -> Tracker:
        if not use_wandb:
            return cls()
        try:
            import wandb
        except ImportError:
            print("wandb is not installed: logging locally only (pip install wandb, or pass --no_wandb)",
                  file=sys.stderr)
            return cls()
        return cls(wandb.init(project=project, name=name, config=config))

    def log(self, metrics: dict, step: int) -> None:
        self.logged.append((step, dict(metrics)))
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def artifact(self, path: Path, name: str, metadata: dict) -> None:
        if self.wandb_run is None:
            return
        import wandb

        art = wandb.Artifact(name, type="model", metadata=metadata)
        art.add_file(str(path))
        self.wandb_run.log_artifact(art)

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
