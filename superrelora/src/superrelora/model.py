"""Building the trainable model for each method on top of peft, and the README's ``SuperReLoRaModel`` API.

Methods: ``superrelora`` / ``lora`` / ``relora`` (peft LoRA, only adapters train; they differ in the merge hook),
``full`` (the raw model, everything trains: what the README's "Full Fine-Tuned" row was meant to be) and ``as_run``
(what the original actually ran: the LoRA wrapper with every weight trainable and no merges).

    python -c "from superrelora.model import lora_param_count; print(lora_param_count('configs/llama_160m.json'))"
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from shared_utils.errors import UserError
from shared_utils.models import load_causal_lm
from superrelora.merge import ADAPTER, lora_layers, partial_merge, should_merge


def load_base_model(model_name: str):
    """A pretrained model (Hub id, local dir, ``smollm2-135m``) or a random one from a config ``.json``."""
    if str(model_name).endswith(".json"):
        from transformers import AutoConfig, AutoModelForCausalLM

        path = Path(model_name)
        if not path.is_file():
            raise UserError(f"model config {path} does not exist")
        cfg = AutoConfig.for_model(**json.loads(path.read_text()))
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return load_causal_lm(model_name, dtype="float32")


def resolve_targets(model: torch.nn.Module, target_modules: list[str]) -> list[str]:
    """Full names of the nn.Linear modules matched by substring, as the original did; [] = every Linear."""
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    hits = [n for n in names if not target_modules or any(t in n for t in target_modules)]
    if not hits:
        raise UserError(f"target_modules {target_modules} match no nn.Linear in the model")
    return hits


def lora_config(cfg, targets: list[str]) -> LoraConfig:
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", init_lora_weights=True, task_type="CAUSAL_LM")


def build_model(cfg, base: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model to train for ``cfg.effective_method`` (build it after seeding: LoRA A is drawn at random)."""
    base = base if base is not None else load_base_model(cfg.model_name)
    method = cfg.effective_method
    if method == "full":
        base.requires_grad_(True)
        return base
    model = get_peft_model(base, lora_config(cfg, resolve_targets(base, cfg.target_modules)))
    if method == "as_run":  # the original never froze anything (bug 2); kept only to reproduce its numbers
        model.requires_grad_(True)
    extra = list(getattr(cfg, "extra_trainable", []) or [])
    for name, p in model.named_parameters():  # e.g. embeddings / norms / lm_head in ReLoRA-style pre-training
        if extra and "lora_" not in name and "base_layer" not in name and any(e in name for e in extra):
            p.requires_grad_(True)
    return model


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_param_count(config_or_model, r: int = 8, targets: list[str] | None = None) -> int:
    """Analytic LoRA size sum r * (in + out) over targeted Linears, built on the meta device (no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from superrelora.config import LLAMA_TARGETS

    if isinstance(config_or_model, torch.nn.Module):
        model = config_or_model
    else:
        cfg = config_or_model
        if isinstance(cfg, (str, Path)):
            cfg = AutoConfig.for_model(**json.loads(Path(cfg).read_text()))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    modules = dict(model.named_modules())
    return sum(r * (modules[n].in_features + modules[n].out_features)
               for n in resolve_targets(model, targets if targets is not None else LLAMA_TARGETS))


class SuperReLoRaModel(torch.nn.Module):
    """The original wrapper's API over a peft model: ``SuperReLoRaModel(base, r=8, alpha=16, target_modules=...)``.

    ``step_partial_merge`` is what the original never called; here the training loops call the same function.
    """

    def __init__(self, base_model, r: int = 64, alpha: float = 32, target_modules=None, split: str = "sqrt"):
        super().__init__()
        from types import SimpleNamespace

        from superrelora.config import LLAMA_TARGETS

        targets = resolve_targets(base_model, list(target_modules) if target_modules is not None else LLAMA_TARGETS)
        self.model = get_peft_model(base_model, lora_config(SimpleNamespace(lora_r=r, lora_alpha=alpha,
                                                                            lora_dropout=0.0), targets))
        self.replaced_modules = targets
        self.split = split

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.model.generate(*args, **kwargs)

    def step_partial_merge(self, step: int, every: int, merge_alpha: float, optimizer=None) -> float:
        """Merge when ``step`` is a positive multiple of ``every``; returns the summed ||s B A||_F (0 if no merge)."""
        if not should_merge(step, every):
            return 0.0
        return partial_merge(self.model, merge_alpha, self.split, "consistent", optimizer)

    def merge_all(self, alpha: float = 1.0, optimizer=None) -> float:
        """Move ``alpha`` of every adapter into the base; alpha=1 leaves B=0, A unchanged (still trainable)."""
        return partial_merge(self.model, alpha, "b_only", "consistent", optimizer)

    def unmerge_all(self):
        raise NotImplementedError("partial merges are not reversible without a merge log; keep a checkpoint instead")

    def save_pretrained(self, path: str | Path) -> None:
        from superrelora.checkpoint import save_adapter_and_base

        save_adapter_and_base(self.model, path)


def base_weight_names(model: torch.nn.Module, adapter: str = ADAPTER) -> list[str]:
    """Parameter names of the base weights that merges modify (a peft adapter checkpoint does not hold them)."""
    return [f"{name}.base_layer.weight" for name, _ in lora_layers(model, adapter)]


def load_trained(model_name: str, run_dir: str | Path) -> torch.nn.Module:
    """Rebuild a trained model from ``<run>/final_model``: adapter + merge-modified base weights (or a full model)."""
    from superrelora.checkpoint import load_final_model

    return load_final_model(model_name, Path(run_dir))


__all__ = ["PeftModel", "SuperReLoRaModel", "build_model", "load_base_model", "lora_param_count", "load_trained"]
