"""Model surgery: rebuild a causal LM with a subset of its layers (plus a replacement layer) as a plain HF model.

As in the original (``replace_lightweight_network`` / ``prune_model``) the pruned model is built fresh from the
config with ``num_hidden_layers`` reduced, and the kept weights are copied by name with layer indices shifted
down, then loaded strictly. Rebuilding (instead of deleting from the ``ModuleList``) keeps attention
``layer_idx`` contiguous and the KV cache sized right (spec 5.5). Unlike the original, every non-layer tensor is
copied generically, which also covers OPT ``project_in/project_out`` (spec bug 8), and per-layer config lists
such as Qwen3 ``layer_types`` are cut to the kept layers.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from llm_streamline.adapters import get_adapter
from llm_streamline.selection import check_interval
from shared_utils.errors import UserError


def streamline_keep(n_layers: int, best: int, n: int, k: int = 1) -> list[int]:
    """Original layer indices kept when the block best..best+n+k-1 becomes k layers at positions best..best+k-1.

    With k = 1 (the original) layer ``best`` stays (its slot holds the lightweight network) and best+1..best+n go.
    """
    check_interval(n, n_layers, k)
    if not 0 <= best <= n_layers - n - k:
        raise UserError(f"block start {best} out of range 0..{n_layers - n - k}")
    return list(range(best + k)) + list(range(best + n + k, n_layers))


def pruned_config(config, keep: list[int]):
    """A copy of ``config`` with ``num_hidden_layers = len(keep)`` and per-layer lists cut to ``keep``."""
    new = copy.deepcopy(config)
    n_layers = config.num_hidden_layers
    for key, value in list(new.to_dict().items()):
        if isinstance(value, list) and len(value) == n_layers and key != "architectures":
            setattr(new, key, [value[i] for i in keep])
    new.num_hidden_layers = len(keep)
    for key in ("quantization_config", "_pre_quantization_dtype"):
        new.__dict__.pop(key, None)
    return new


def map_state_dict(state: dict, prefix: str, keep: list[int]) -> dict:
    """Rename ``{prefix}.{old}.*`` to ``{prefix}.{new}.*`` for kept layers, drop the others, copy the rest."""
    new_index = {old: new for new, old in enumerate(keep)}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(1)) in new_index:
            out[f"{prefix}.{new_index[int(m.group(1))]}.{m.group(2)}"] = value
    return out


def build_pruned_model(model, keep: list[int], replacements: dict[int, nn.Module] | None = None, dtype=None):
    """A fresh ``AutoModelForCausalLM`` with the original layers ``keep`` (in order) and copied weights.

    Args:
        model: the original causal LM.
        keep: original layer indices to keep, increasing.
        replacements: ``{original_index: module}``: use this module's weights (same class as the layer) in that slot.
        dtype: dtype of the new model (default: the original's).
    """
    from transformers import AutoModelForCausalLM

    adapter = get_adapter(model)
    if sorted(set(keep)) != list(keep):
        raise UserError(f"kept layers must be strictly increasing, got {keep}")
    config = pruned_config(model.config, keep)
    state = model.state_dict()
    for old, module in (replacements or {}).items():
        if old not in keep:
            raise UserError(f"replacement for layer {old}, which is not kept")
        for name, value in module.state_dict().items():
            state[f"{adapter.layers_prefix}.{old}.{name}"] = value
    state = map_state_dict(state, adapter.layers_prefix, keep)
    dtype = dtype or next(model.parameters()).dtype
    with torch.device("meta"):
        new = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = new.load_state_dict(state, strict=False, assign=True)
    tied = set(getattr(new, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise UserError(f"pruned state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    new.tie_weights()
    _materialise_buffers(new, model)
    return new.eval()


def _materialise_buffers(new, original) -> None:
    """Non-persistent buffers (rotary inv_freq) are not in the state dict: copy them from the original."""
    orig_buffers = dict(original.named_buffers())
    for name, buf in list(new.named_buffers()):
        if buf.is_meta:
            src = orig_buffers.get(name)
            if src is None:  # layer buffers shift index; rotary/global buffers keep their name
                raise UserError(f"cannot materialise buffer {name} of the pruned model")
            module_name, _, attr = name.rpartition(".")
            module = new.get_submodule(module_name) if module_name else new
            module._buffers[attr] = src.clone()
        if hasattr(new.model, "rotary_emb") and hasattr(original.model, "rotary_emb"):
            rot = new.model.rotary_emb
            if hasattr(rot, "original_inv_freq") and hasattr(original.model.rotary_emb, "original_inv_freq"):
                rot.original_inv_freq = original.model.rotary_emb.original_inv_freq


def streamline_model(model, best: int, n: int, replacements: list[nn.Module] | None = None):
    """Block -> k = len(replacements) layers at best.. (their weights; without replacements: original layer best)."""
    k = len(replacements) if replacements else 1
    keep = streamline_keep(len(get_adapter(model).layers(model)), best, n, k)
    return build_pruned_model(model, keep, {best + i: m for i, m in enumerate(replacements or [])})


def drop_layers(model, drop: list[int]):
    """ShortGPT-style: remove the listed layers, no replacement."""
    n_layers = len(get_adapter(model).layers(model))
    keep = [i for i in range(n_layers) if i not in set(drop)]
    return build_pruned_model(model, keep)


def count_params(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
