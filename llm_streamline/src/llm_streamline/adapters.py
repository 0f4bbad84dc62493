"""Architecture adapters: where a causal LM keeps its decoder layers and how to run one layer on its own.

The original code branches on substrings of the model *name* ("llama"/"opt"), so a local SmolLM2 directory
matches neither and fails with a NameError (spec bug 7). Here dispatch is by ``config.model_type`` and every
Llama-like model (llama, mistral, qwen2, qwen3, smollm = llama) shares one adapter; OPT has its own.

Running a layer standalone (MSE training) needs, in transformers 5, the rotary ``position_embeddings`` and an
explicit causal mask: with ``attention_mask=None`` eager attention applies *no* mask, which is how the original
trained its replacement layer bidirectionally (spec bug 4). :func:`causal_mask_4d` builds the additive mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shared_utils.errors import UserError

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2")


def causal_mask_4d(attention_mask: torch.Tensor | None, batch: int, seq_len: int, dtype, device) -> torch.Tensor:
    """Additive [B, 1, T, T] mask: 0 where query t may attend key s (s <= t and s not padding), else min(dtype).

    ``finfo.min`` instead of ``-inf`` keeps fully-masked rows (left padding) finite instead of NaN.
    """
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    allowed = allowed.expand(batch, 1, seq_len, seq_len)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    mask = torch.zeros(batch, 1, seq_len, seq_len, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def _unwrap(out):
    # transformers 4 returns a tuple (hidden, ...), transformers 5 a tensor
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclass
class LlamaAdapter:
    """Llama-like decoder: ``model.model.layers``, RMSNorm ``model.model.norm``, RoPE from ``model.model.rotary_emb``."""

    layers_prefix: str = "model.layers"
    has_gated_mlp: bool = True

    def base(self, model):
        return model.model

    def layers(self, model) -> nn.ModuleList:
        return model.model.layers

    def final_norm(self, model):
        return model.model.norm

    def attention_out_proj(self, layer) -> nn.Linear:
        return layer.self_attn.o_proj

    def mlp_modules(self, layer) -> list[nn.Module]:
        return [layer.mlp, layer.post_attention_layernorm]

    def run_layer(self, model, layer, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One decoder layer on [B, T, d] hidden states with RoPE positions 0..T-1 and a causal (+padding) mask."""
        b, t, _ = hidden.shape
        position_ids = torch.arange(t, device=hidden.device).unsqueeze(0).expand(b, t)
        pos_emb = model.model.rotary_emb(hidden, position_ids=position_ids)
        mask = causal_mask_4d(attention_mask, b, t, hidden.dtype, hidden.device)
        return _unwrap(layer(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=pos_emb))


@dataclass
class OPTAdapter:
    """OPT decoder: ``model.model.decoder.layers``; learned positions are added at the input, so a layer needs only a mask."""

    layers_prefix: str = "model.decoder.layers"
    has_gated_mlp: bool = False

    def base(self, model):
        return model.model.decoder

    def layers(self, model) -> nn.ModuleList:
        return model.model.decoder.layers

    def final_norm(self, model):
        return model.model.decoder.final_layer_norm

    def attention_out_proj(self, layer) -> nn.Linear:
        return layer.self_attn.out_proj

    def mlp_modules(self, layer) -> list[nn.Module]:
        return [layer.fc1, layer.fc2, layer.final_layer_norm]

    def run_layer(self, model, layer, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = hidden.shape
        position_ids = torch.arange(t, device=hidden.device).unsqueeze(0).expand(b, t)
        mask = causal_mask_4d(attention_mask, b, t, hidden.dtype, hidden.device)
        return _unwrap(layer(hidden, attention_mask=mask, position_ids=position_ids))


def get_adapter(model_or_config):
    """The adapter for a model (or config), chosen by ``model_type``; unknown types are one clear error."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in LLAMA_LIKE:
        return LlamaAdapter()
    if model_type == "opt":
        return OPTAdapter()
    raise UserError(
        f"unsupported architecture '{model_type}': LLM-Streamline supports Llama-like models "
        f"({', '.join(LLAMA_LIKE)}) and OPT"
    )


def num_layers(model) -> int:
    return len(get_adapter(model).layers(model))
