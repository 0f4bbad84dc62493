"""DiT-style transformer of bd3lms (models/dit.py), device-agnostic, with an explicit KV cache.

Token embedding -> N blocks (pre-LayerNorm without bias, fused qkv, rotary q/k, MLP d->4d->d with tanh-GELU,
adaLN-Zero modulation from a timestep embedding) -> final LayerNorm + zero-initialised Linear (uniform logits
at init). `causal=True` is the AR baseline (no adaLN unless asked). The attention mask is an explicit boolean
(query, key) matrix so the same network serves the 2L training input, cache-free sampling and cached sampling.

python -m pytest tests/test_model.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm with weight only, computed in fp32 (bd3lms `LayerNorm`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x):
        return F.layer_norm(x.float(), [self.dim]).type_as(x) * self.weight[None, None, :]


def rotary_tables(pos, d: int, dtype, base: float = 10000.0):
    """cos/sin tables [N, d] for integer positions pos [N] (computed once per forward, in fp64)."""
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float64) / d))
    freqs = pos.to(torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotary(x, cos, sin):
    """Rotary embedding of x [B, H, N, D] (rotate-half convention)."""
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class TimestepEmbedder(nn.Module):
    """Sinusoidal 256-d embedding of sigma -> MLP to cond_dim (bd3lms `TimestepEmbedder`)."""

    def __init__(self, cond_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class KVCache:
    """Per-layer rotated keys and values of the clean context; grows by `store` passes only."""

    def __init__(self, n_layers: int):
        self.k = [None] * n_layers
        self.v = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def get(self, layer, k, v):
        if self.k[layer] is None:
            return k, v
        return torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)

    def append(self, layer, k, v):
        self.k[layer], self.v[layer] = self.get(layer, k, v)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, cond_dim: int, dropout: float, adaln: bool):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = LayerNorm(dim), LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.adaLN_modulation = None
        if adaln:
            self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, rot, mask, c, cache: KVCache | None, layer: int, store: bool):
        B, N, D = x.shape
        if self.adaLN_modulation is not None:
            mods = self.adaLN_modulation(c)[:, None, :].chunk(6, dim=2)
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        h = self.norm1(x)
        if self.adaLN_modulation is not None:
            h = modulate(h, shift_a, scale_a)
        q, k, v = self.attn_qkv(h).view(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, *rot), rotary(k, *rot)
        k_all, v_all = (k, v) if cache is None else cache.get(layer, k, v)
        if store:
            cache.append(layer, k, v)
        a = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        a = self.attn_out(a.transpose(1, 2).reshape(B, N, D))
        a = F.dropout(a, self.dropout, self.training)
        x = x + (gate_a * a if self.adaLN_modulation is not None else a)
        h = self.norm2(x)
        if self.adaLN_modulation is not None:
            h = modulate(h, shift_m, scale_m)
        m = F.dropout(self.mlp(h), self.dropout, self.training)
        return x + (gate_m * m if self.adaLN_modulation is not None else m)


class DiT(nn.Module):
    """The backbone. forward(ids, pos, mask) -> logits at `out_idx` (all positions when None)."""

    def __init__(self, vocab_size: int, hidden_size: int = 128, n_blocks: int = 4, n_heads: int = 4,
                 cond_dim: int = 32, dropout: float = 0.1, causal: bool = False, adaln: bool | None = None):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} not divisible by n_heads {n_heads}")
        self.causal = causal
        self.adaln = (not causal) if adaln is None else (adaln or not causal)
        self.vocab_embed = nn.Parameter(torch.empty(vocab_size, hidden_size))
        nn.init.kaiming_uniform_(self.vocab_embed, a=math.sqrt(5))
        self.sigma_map = TimestepEmbedder(cond_dim) if self.adaln else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, n_heads, cond_dim, dropout, self.adaln)
                                    for _ in range(n_blocks))
        self.norm_final = LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.final_modulation = None
        if self.adaln:
            self.final_modulation = nn.Linear(cond_dim, 2 * hidden_size)
            nn.init.zeros_(self.final_modulation.weight)
            nn.init.zeros_(self.final_modulation.bias)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    def forward(self, ids, pos, mask, sigma=None, out_idx=None, cache: KVCache | None = None, store=False):
        """ids [B, N]; pos [N]; mask [N, N_cache + N] bool or None (= attend to everything); sigma [B].

        `store=True` appends this pass's keys/values to `cache` (the clean-context pass of the sampler).
        """
        x = self.vocab_embed[ids]
        c = None
        if self.adaln:
            sigma = torch.zeros(ids.shape[0], device=ids.device) if sigma is None else sigma  # no time conditioning
            c = F.silu(self.sigma_map(sigma))
        if cache is not None and store is False and cache.length == 0:
            cache = None
        rot = rotary_tables(pos, x.shape[-1] // self.blocks[0].n_heads, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, rot, mask, c, cache, i, store)
        if out_idx is not None:
            x = x[:, out_idx]
        h = self.norm_final(x)
        if self.final_modulation is not None:
            shift, scale = self.final_modulation(c)[:, None, :].chunk(2, dim=2)
            h = modulate(h, shift, scale)
        return self.output(h)
