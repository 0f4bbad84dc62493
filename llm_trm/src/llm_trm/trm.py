"""SequenceTRM: the tiny recursive model of phase 2, as [LT] src/train/phase2_trm.py builds it, plus EMA.

Recursion (TRM paper, Jolicoeur-Martineau 2025, Alg. 3), on compressed context x [B, L, D']:
    x_aug = [x ; reasoning_token]                                   [B, L+1, D']
    latent_recursion:  z <- norm(net(x + y + z))  n times;  y <- norm(net(y + z))
    deep_recursion:    T-1 latent recursions without grad, then 1 with grad
    prediction:        y[:, -1]  (the refined reasoning token);  halt = sigmoid(halt_head(y[:, -1]))
Deep supervision: N_sup deep recursions per batch, one optimizer step each, (y, z) detached in between.
[LT] deviations from the official TRM, kept: pre-norm blocks with learnable RMSNorm, nn.MultiheadAttention
with biases and no positional encoding, GELU MLP, a shared output RMSNorm after every net call, y = z = 0.

    python -m pytest tests/test_trm.py -q
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TRMConfig:
    d_model: int = 256  # D' (the compressor's width)
    n_layers: int = 2
    n_heads: int = 8
    n: int = 6  # latent updates per recursion
    T: int = 3  # recursions per deep-supervision step (T-1 without grad)
    dropout: float = 0.1
    mlp_ratio: int = 4
    output_head: bool = True  # unconstrained linear read-out of y[:, -1] (False: the RMSNorm-pinned y[:, -1] of [LT])
    max_positions: int = 128  # learned position embeddings added to the context (0: none, as [LT])


class TRMBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.RMSNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.RMSNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d),
                                 nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        a = self.norm1(h)
        h = h + self.drop(self.attn(a, a, a, key_padding_mask=pad, need_weights=False)[0])
        return h + self.mlp(self.norm2(h))


class SequenceTRM(nn.Module):
    """Context [B, L, D'] + mask [B, L] -> refined reasoning token [B, D'] (and y, z of shape [B, L+1, D'])."""

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"D'={cfg.d_model} must be divisible by n_heads={cfg.n_heads}")
        self.cfg = cfg
        self.net = nn.ModuleList(TRMBlock(cfg.d_model, cfg.n_heads, cfg.dropout, cfg.mlp_ratio)
                                 for _ in range(cfg.n_layers))
        self.output_norm = nn.RMSNorm(cfg.d_model)
        self.reasoning_token = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
        # [LT] had no positional information, so its attention is permutation-invariant over the context and
        # cannot tell "37 + 45" from "73 + 54"; learned absolute positions fix that.
        self.pos_emb = nn.Parameter(torch.randn(1, cfg.max_positions, cfg.d_model) * 0.02) if cfg.max_positions else None
        self.halt_head = nn.Linear(cfg.d_model, 1)
        # [LT] read the prediction straight off the shared output RMSNorm, which pins its RMS near the norm gain;
        # a linear head (zero-init: the first prediction is the standardised mean, 0) lets the scale be learnt.
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model) if cfg.output_head else None
        if self.out_proj is not None:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)
        # train statistics (set by phase 2): inputs are divided by x_scale, the net predicts (y - y_mean) / y_std
        self.register_buffer("x_scale", torch.ones(()))
        self.register_buffer("y_mean", torch.zeros(cfg.d_model))
        self.register_buffer("y_std", torch.ones(cfg.d_model))

    def set_statistics(self, xs: list[torch.Tensor], ys: torch.Tensor) -> None:
        """Input RMS and per-dimension target mean / std from the training pairs."""
        flat = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
        self.x_scale.copy_(flat.pow(2).mean().sqrt().clamp_min(1e-6))
        self.y_mean.copy_(ys.mean(0))
        self.y_std.copy_(ys.std(0).clamp_min(1e-6) if len(ys) > 1 else torch.ones_like(ys[0]))

    def standardize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std

    def unstandardize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.y_std + self.y_mean

    def run_net(self, h: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        for blk in self.net:
            h = blk(h, pad)
        return self.output_norm(h)

    def prepare(self, x: torch.Tensor, mask: torch.Tensor):
        """Scale the context and leave a slot for the reasoning token; returns x_aug (no parameters in it:
        the learned reasoning token and positions are added in every :meth:`deep_recursion`, so each
        supervision step has its own graph), key-padding mask (True = ignore), zero y and z."""
        b = x.shape[0]
        if self.pos_emb is not None and x.shape[1] > self.cfg.max_positions:
            raise ValueError(f"context of {x.shape[1]} states > max_positions {self.cfg.max_positions}")
        x_aug = torch.cat([x / self.x_scale, torch.zeros(b, 1, x.shape[-1], dtype=x.dtype, device=x.device)], dim=1)
        valid = torch.cat([mask.bool(), torch.ones(b, 1, dtype=torch.bool, device=x.device)], dim=1)
        zeros = torch.zeros_like(x_aug)
        return x_aug, ~valid, zeros, zeros.clone()

    def learned_inputs(self, x_aug: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """x_aug + positions (on real context positions) + the reasoning token (in the last slot)."""
        b, n, d = x_aug.shape
        extra = torch.cat([torch.zeros(1, n - 1, d, dtype=x_aug.dtype, device=x_aug.device),
                           self.reasoning_token.to(x_aug.dtype)], dim=1)
        if self.pos_emb is not None:
            pos = torch.cat([self.pos_emb[:, : n - 1], torch.zeros(1, 1, d, device=x_aug.device)], dim=1)
            extra = extra + pos.to(x_aug.dtype) * (~pad[:, :, None]).to(x_aug.dtype)
        return x_aug + extra

    def latent_recursion(self, x, y, z, pad):
        for _ in range(self.cfg.n):
            z = self.run_net(x + y + z, pad)
        y = self.run_net(y + z, pad)
        return y, z

    def deep_recursion(self, x, y, z, pad):
        """One supervision step: T-1 recursions without a graph, the last one with it."""
        x = self.learned_inputs(x, pad)
        with torch.no_grad():
            for _ in range(self.cfg.T - 1):
                y, z = self.latent_recursion(x, y, z, pad)
        y, z = self.latent_recursion(x, y, z, pad)
        pred = y[:, -1] if self.out_proj is None else self.out_proj(y[:, -1])
        halt_logit = self.halt_head(y[:, -1]).squeeze(-1)
        return y, z, pred, halt_logit

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor, n_sup: int) -> torch.Tensor:
        """Inference: ``n_sup`` deep recursions, no halting; returns y[:, -1] [B, D']."""
        return self.predict_with_grad(x, mask, n_sup)

    def predict_with_grad(self, x: torch.Tensor, mask: torch.Tensor, n_sup: int) -> torch.Tensor:
        """Like :meth:`predict` but the last recursion keeps its graph (phase-3 policy mean). Returns the
        prediction in target units (un-standardised)."""
        x_aug, pad, y, z = self.prepare(x, mask)
        for _ in range(n_sup - 1):
            with torch.no_grad():
                y, z, _, _ = self.deep_recursion(x_aug, y, z, pad)
        y, z, pred, _ = self.deep_recursion(x_aug, y.detach(), z.detach(), pad)
        return self.unstandardize(pred)


def halt_loss(halt_logit, pred, target, mode: str = "mse", threshold: float = 0.7, detach_target: bool = True):
    """[LT] halt losses. mse: MSE(sigmoid(logit), cos(pred, target)); bce: BCE vs 1[cos > threshold].

    ``detach_target=False`` reproduces [LT] bug (b): the cosine target then backpropagates into the TRM.
    """
    cos = F.cosine_similarity(pred, target, dim=-1)
    if detach_target:
        cos = cos.detach()
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(halt_logit, (cos > threshold).float())
    return F.mse_loss(torch.sigmoid(halt_logit), cos)


class EMA:
    """Exponential moving average of parameters: shadow <- d_t * shadow + (1 - d_t) * param.

    With ``warmup`` (default) d_t = min(decay, (1 + t) / (10 + t)) after t updates (the TF / timm warm-up),
    so a short run does not evaluate weights that are still mostly the initialisation ([LT]: decay 0.999 after
    120 steps kept ~89% of the init); ``warmup=False`` is the original constant decay.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.num_updates += 1
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(p.detach(), alpha=1 - d)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the EMA weights (the weights used for evaluation)."""
        out = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in out.named_parameters():
                if k in self.shadow:
                    p.copy_(self.shadow[k])
        return out
