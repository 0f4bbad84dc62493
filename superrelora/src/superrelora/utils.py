"""The original ``src/utils.py`` helpers, fixed: parameter counts that do not crash, checkpoints that keep the
merge-modified base weights, and an optimizer-state scaling that works in place and leaves ``step`` alone.

    python -c "from superrelora.utils import count_superrelora_params"
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.runs import atomic_torch_save
from superrelora.merge import lora_layers


def get_trainable_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_model_size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_superrelora_params(model: torch.nn.Module) -> dict:
    """{"base": ..., "lora": ..., "layers": ...} over the LoRA layers (the original called .numel() on modules)."""
    base = lora = 0
    layers = lora_layers(model)
    for _, layer in layers:
        lin = layer.get_base_layer()
        base += lin.weight.numel() + (lin.bias.numel() if lin.bias is not None else 0)
        lora += layer.lora_A["default"].weight.numel() + layer.lora_B["default"].weight.numel()
    return {"base": base, "lora": lora, "layers": len(layers)}


def save_checkpoint(model, optimizer, epoch: int, path: str | Path) -> Path:
    """The original's dict format ({model_state_dict, optimizer_state_dict, epoch}), written atomically.

    ``model_state_dict`` is the full state dict, so merge-modified base weights are kept.
    """
    return atomic_torch_save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                              "epoch": epoch}, path)


def load_checkpoint(model, optimizer, path: str | Path) -> int:
    from shared_utils.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or "model_state_dict" not in blob:
        raise UserError(f"{path}: not a checkpoint written by save_checkpoint (no model_state_dict)")
    model.load_state_dict(blob["model_state_dict"])
    if optimizer is not None:
        optimizer.load_state_dict(blob["optimizer_state_dict"])
    return int(blob["epoch"])


@torch.no_grad()
def scale_optimizer_state(optimizer, params, factor: float) -> None:
    """Multiply Adam's exp_avg / exp_avg_sq of ``params`` by ``factor`` in place (``step`` untouched)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    for p in params:
        state = inner.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].mul_(factor)
