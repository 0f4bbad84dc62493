"""Checkpoints that keep the merge-modified base weights.

A peft adapter checkpoint stores only lora_A/lora_B. After partial merges the base weights have changed, so
"original base + adapter" is silently a different model. Every checkpoint here also stores
``superrelora_state.safetensors``: every trainable parameter plus every base weight under a LoRA layer (or the whole
model when the base itself was randomly initialised from a config file). ``merged_model/`` is the deployable
``merge_and_unload()`` export, loadable with ``AutoModelForCausalLM.from_pretrained``.

    python -m pytest tests/test_checkpoint.py -q
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from shared_utils.errors import UserError
from shared_utils.runs import atomic_dir, atomic_torch_save, atomic_write_json
from superrelora.model import base_weight_names, load_base_model
from superrelora.preflight import RUN_FILE, STATE_FILE, check_checkpoint, latest_checkpoint  # noqa: F401


def state_to_save(model: torch.nn.Module, everything: bool = False) -> dict[str, torch.Tensor]:
    """Trainable parameters + merge-modified base weights (or every parameter) as detached CPU copies."""
    keep = set(base_weight_names(model))
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters()
            if everything or p.requires_grad or n in keep}


def save_state(model: torch.nn.Module, directory: str | Path, everything: bool = False) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STATE_FILE}.tmp"
    save_file(state_to_save(model, everything), str(tmp))
    os.replace(tmp, directory / STATE_FILE)
    return directory / STATE_FILE


@torch.no_grad()
def load_state(model: torch.nn.Module, directory: str | Path) -> int:
    """Copy the saved tensors into ``model`` in place (parameter objects unchanged); returns the count."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise UserError(f"{directory}: no {STATE_FILE} (not a superrelora checkpoint, or written by another tool)")
    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = sorted(set(saved) - set(params))
    if missing:
        raise UserError(f"{path}: {len(missing)} tensor(s) do not exist in this model, e.g. {missing[0]} "
                        "(different model_name, method or target_modules?)")
    for name, tensor in saved.items():
        if params[name].shape != tensor.shape:
            raise UserError(f"{path}: {name} has shape {tuple(tensor.shape)}, model has {tuple(params[name].shape)}")
        params[name].copy_(tensor)
    return len(saved)


def save_checkpoint(directory, model, optimizer, scheduler, step: int, everything: bool = False, extra=None,
                    run_info: dict | None = None) -> Path:
    """Manual-loop checkpoint, written to a temp dir and renamed, so a crash never leaves half a checkpoint."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        save_state(model, tmp, everything)
        atomic_torch_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", {"global_step": step, **(extra or {})})
        atomic_write_json(tmp / RUN_FILE, {"global_step": step, **(run_info or {})})
    return directory


def write_run_info(directory, step: int, config: dict, merges: list) -> Path:
    """The checkpoint's run record (config + merge events up to ``step``); Trainer checkpoints get it in on_save."""
    return atomic_write_json(Path(directory) / RUN_FILE, {"global_step": step, "config": config, "merges": merges})


def validate_checkpoint(directory: str | Path, config: dict) -> dict:
    """Before any model is built: the checkpoint's config matches ``config`` and its files parse; then its tensor
    files load with safetensors / torch. Returns its run record ({} for a checkpoint without one)."""
    directory = Path(directory)
    info = check_checkpoint(directory, config)
    for path in sorted(directory.iterdir()):
        if path.suffix == ".safetensors":
            try:
                load_file(str(path))
            except Exception as exc:  # safetensors raises its own error types
                raise UserError(f"{path}: corrupt or truncated safetensors file ({type(exc).__name__})") from None
        elif path.suffix in (".pt", ".pth", ".bin"):
            _torch_load(path)
    return info


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # EOFError, UnpicklingError, RuntimeError (zip) for truncated files
        raise UserError(f"{path}: corrupt or truncated checkpoint file ({type(exc).__name__}); resume from an "
                        "earlier checkpoint") from None


def load_checkpoint(directory, model, optimizer, scheduler) -> dict:
    """Restore model tensors, optimizer, scheduler and RNG; returns state.json (with ``global_step``)."""
    directory = Path(directory)
    if not (directory / "state.json").is_file() or not (directory / "optimizer.pt").is_file():
        raise UserError(f"{directory}: not a manual-loop checkpoint (needs state.json and optimizer.pt)")
    load_state(model, directory)
    blob = _torch_load(directory / "optimizer.pt")
    try:
        optimizer.load_state_dict(blob["optimizer"])
    except (ValueError, KeyError) as exc:
        raise UserError(f"{directory}: optimizer state does not match this model ({exc})") from None
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"])
    return json.loads((directory / "state.json").read_text())


def save_adapter_and_base(model: torch.nn.Module, directory: str | Path, everything: bool = False) -> Path:
    """peft adapter files (``adapter_config.json`` + weights) plus the superrelora state file."""
    directory = Path(directory)
    if isinstance(model, PeftModel):
        model.save_pretrained(directory)
    else:
        model.save_pretrained(directory)
    save_state(model, directory, everything)
    return directory


def export_merged(model: torch.nn.Module, directory: str | Path, tokenizer=None) -> Path:
    """``merge_and_unload()`` on a copy, saved as a plain Hugging Face model directory."""
    plain = copy.deepcopy(model).merge_and_unload() if isinstance(model, PeftModel) else model
    plain.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return Path(directory)


def load_final_model(model_name: str, run_dir: Path, base: torch.nn.Module | None = None) -> torch.nn.Module:
    """Model from ``<run_dir>/final_model`` (adapter + state) with the merge-modified base weights restored."""
    final = Path(run_dir) / "final_model"
    if not final.is_dir():
        raise UserError(f"{run_dir}: no final_model/ directory (did training finish?)")
    if not (final / "adapter_config.json").is_file():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    base = base if base is not None else load_base_model(model_name)
    model = PeftModel.from_pretrained(base, final)
    load_state(model, final)
    return model.eval()
