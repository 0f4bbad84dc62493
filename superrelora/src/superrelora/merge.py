"""The algorithm: partial (alpha) merge of peft LoRA adapters into their base weights, and ReLoRA's merge+reinit.

SuperReLoRA is plain LoRA plus a hook that runs after the optimizer step every ``merge_every`` updates:

    W  <- W + alpha * s * B A                      (s = lora_alpha / r, peft's ``scaling``)
    (A, B) rescaled so that s * B A  ->  (1 - alpha) * s * B A     ("exact": the function is unchanged)

so after K merges the base has absorbed 1 - (1 - alpha)^K of a static adapter. Split of the (1 - alpha) factor:
``sqrt`` (A and B each times sqrt(1 - alpha), default), ``b_only`` (B times (1 - alpha); alpha = 1 is a full
merge that leaves a normal LoRA init state) and ``reference`` (the original repo: A and B each times (1 - alpha),
so the product shrinks by (1 - alpha)^2 and every merge deletes alpha (1 - alpha) of the adapter's contribution).

Adam moments are modified in place (never replaced; ``step`` untouched): ``consistent`` scales m_A by c_B and v_A
by c_B^2 (grad wrt A is proportional to B) and symmetrically for B, ``reference`` multiplies both moments of both
factors by (1 - alpha) as the repo did, ``keep``, ``reset`` and ``prune:<p>`` (magnitude pruning as in ReLoRA).

    python -m pytest tests/test_merge.py -q
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from peft.tuners.lora import LoraLayer

from superrelora.config import check_merge_args

ADAPTER = "default"


def lora_layers(model: torch.nn.Module, adapter: str = ADAPTER) -> list[tuple[str, LoraLayer]]:
    """(name, layer) for every peft LoRA layer that holds ``adapter``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A]


def split_factors(alpha: float, split: str) -> tuple[float, float]:
    """(c_A, c_B) multiplying A and B after moving alpha of the product into the base weight."""
    if split == "sqrt":
        c = math.sqrt(1.0 - alpha)
        return c, c
    if split == "b_only":
        return 1.0, 1.0 - alpha
    if split == "reference":
        return 1.0 - alpha, 1.0 - alpha
    raise ValueError(f"unknown split {split!r}")


def _inner(optimizer):
    """The torch optimizer under accelerate's AcceleratedOptimizer (Trainer) or the optimizer itself."""
    while optimizer is not None and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def _moment_tensors(optimizer, param) -> list[tuple[str, torch.Tensor]]:
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    return [(k, state[k]) for k in ("exp_avg", "exp_avg_sq") if k in state and torch.is_tensor(state[k])]


def magnitude_prune_(tensor: torch.Tensor, share: float) -> None:
    """Zero (in place) the ``share`` of entries with the smallest magnitude (ReLoRA's optimizer_reset)."""
    k = int(round(share * tensor.numel()))
    if k <= 0:
        return
    if k >= tensor.numel():
        tensor.zero_()
        return
    flat = tensor.abs().flatten()
    # kth smallest, strict "<=" would prune whole tensors on ties (Soup#693): prune exactly k entries.
    idx = torch.topk(flat, k, largest=False).indices
    tensor.view(-1)[idx] = 0


def adjust_moments(optimizer, param, mode: str, alpha: float, c_other: float) -> None:
    """Modify the Adam moments of one adapter factor in place after a merge.

    Args:
        mode: consistent | reference | keep | reset | prune:<p>.
        c_other: the factor applied to the *other* matrix of the pair (consistent mode).
    """
    for key, t in _moment_tensors(_inner(optimizer), param):
        if mode == "consistent":
            t.mul_(c_other if key == "exp_avg" else c_other * c_other)
        elif mode == "reference":
            t.mul_(1.0 - alpha)
        elif mode == "reset":
            t.zero_()
        elif mode.startswith("prune:"):
            magnitude_prune_(t, float(mode.split(":", 1)[1]))
        elif mode != "keep":
            raise ValueError(f"unknown moments mode {mode!r}")


@torch.no_grad()
def merge_layer(layer: LoraLayer, alpha: float, split: str = "sqrt", adapter: str = ADAPTER) -> tuple[float, float, float]:
    """Move ``alpha`` of ``s * B A`` into the base weight of one layer; returns (||s B A||_F, c_A, c_B)."""
    base = layer.get_base_layer().weight
    delta = layer.get_delta_weight(adapter)  # s * B @ A, fan_in_fan_out handled by peft
    if base.dtype != torch.float32 and base.dtype != torch.float64:
        base.copy_((base.float() + alpha * delta.float()).to(base.dtype))  # bf16 base: add in fp32, round once
    else:
        base.add_(delta.to(base.dtype), alpha=alpha)
    c_a, c_b = split_factors(alpha, split)
    layer.lora_A[adapter].weight.mul_(c_a)
    layer.lora_B[adapter].weight.mul_(c_b)
    return float(delta.double().norm()), c_a, c_b


def partial_merge(
    model: torch.nn.Module,
    alpha: float,
    split: str = "sqrt",
    moments: str = "consistent",
    optimizer=None,
    adapter: str = ADAPTER,
) -> float:
    """SuperReLoRA's partial merge over every LoRA layer; returns the summed Frobenius norm of s*B*A.

    Refuses (UserError, nothing modified) exactly what the config refuses: alpha = 1 with a split that would
    zero both factors (sqrt, reference). ``merge_all(1.0)`` uses ``b_only``.
    """
    check_merge_args(alpha, split)
    total = 0.0
    for _, layer in lora_layers(model, adapter):
        norm, c_a, c_b = merge_layer(layer, alpha, split, adapter)
        total += norm
        adjust_moments(optimizer, layer.lora_A[adapter].weight, moments, alpha, c_other=c_b)
        adjust_moments(optimizer, layer.lora_B[adapter].weight, moments, alpha, c_other=c_a)
    return total


@torch.no_grad()
def merge_and_reinit(model: torch.nn.Module, optimizer=None, prune: float = 0.9, adapter: str = ADAPTER) -> float:
    """ReLoRA: W += s B A, then A <- kaiming, B <- 0 (peft's own init) and magnitude-prune the adapters' moments."""
    total = 0.0
    for _, layer in lora_layers(model, adapter):
        norm, _, _ = merge_layer(layer, 1.0, "b_only", adapter)
        total += norm
        layer.reset_lora_parameters(adapter, True)
        for p in (layer.lora_A[adapter].weight, layer.lora_B[adapter].weight):
            adjust_moments(optimizer, p, f"prune:{prune}", 1.0, 1.0)
    return total


def should_merge(step: int, every: int) -> bool:
    """Merge after optimizer update number ``step`` (1-based) when it is a positive multiple of ``every``."""
    return every > 0 and step > 0 and step % every == 0


@dataclass
class MergeHook:
    """Called once per optimizer update, after optimizer.step / scheduler.step / zero_grad (Trainer's on_step_end).

    ``probe`` (optional) returns logits for a fixed batch; the hook records max |logit change| across each merge.
    """

    mode: str = "superrelora"  # superrelora | relora | none
    every: int = 0
    alpha: float = 0.1
    split: str = "sqrt"
    moments: str = "consistent"
    prune: float = 0.9
    probe: Callable[[torch.nn.Module], torch.Tensor] | None = None
    events: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.mode in ("superrelora", "relora") and self.every > 0

    def on_update(self, step: int, model: torch.nn.Module, optimizer=None) -> dict | None:
        if not (self.active and should_merge(step, self.every)):
            return None
        before = self.probe(model) if self.probe is not None else None
        if self.mode == "relora":
            norm = merge_and_reinit(model, optimizer, prune=self.prune)
        else:
            norm = partial_merge(model, self.alpha, self.split, self.moments, optimizer)
        event = {"step": step, "merge_norm": norm, "merge_count": len(self.events) + 1}
        if before is not None:
            event["max_logit_change"] = float((self.probe(model) - before).abs().max())
        self.events.append(event)
        return event

    def restore(self, step: int, events: list | None = None) -> None:
        """After resuming at ``step``: the checkpoint's merge log (``events``), or, for a checkpoint without one,
        the merges its schedule implies."""
        if events is not None:
            self.events = [dict(e) for e in events if e.get("step", 0) <= step]
            return
        self.events = [{"step": s, "merge_count": i + 1, "restored": True}
                       for i, s in enumerate(s for s in range(1, step + 1) if self.active and should_merge(s, self.every))]
