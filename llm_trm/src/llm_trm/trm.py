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
        self.halt_head = nn.Linear(cfg.d_model, 1)

    def run_net(self, h: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        for blk in self.net:
            h = blk(h, pad)
        return self.output_norm(h)

    def prepare(self, x: torch.Tensor, mask: torch.Tensor):
        """Append the reasoning token; returns x_aug, key-padding mask (True = ignore), zero y and z."""
        b = x.shape[0]
        x_aug = torch.cat([x, self.reasoning_token.expand(b, 1, -1).to(x.dtype)], dim=1)
        valid = torch.cat([mask.bool(), torch.ones(b, 1, dtype=torch.bool, device=x.device)], dim=1)
        zeros = torch.zeros_like(x_aug)
        return x_aug, ~valid, zeros, zeros.clone()

    def latent_recursion(self, x, y, z, pad):
        for _ in range(self.cfg.n):
            z = self.run_net(x + y + z, pad)
        y = self.run_net(y + z, pad)
        return y, z

    def deep_recursion(self, x, y, z, pad):
        """One supervision step: T-1 recursions without a graph, the last one with it."""
        with torch.no_grad():
            for _ in range(self.cfg.T - 1):
                y, z = self.latent_recursion(x, y, z, pad)
        y, z = self.latent_recursion(x, y, z, pad)
        pred = y[:, -1]
        halt_logit = self.halt_head(pred).squeeze(-1)
        return y, z, pred, halt_logit

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor, n_sup: int) -> torch.Tensor:
        """Inference: ``n_sup`` deep recursions, no halting; returns y[:, -1] [B, D']."""
        return self.predict_with_grad(x, mask, n_sup)

    def predict_with_grad(self, x: torch.Tensor, mask: torch.Tensor, n_sup: int) -> torch.Tensor:
        """Like :meth:`predict` but the last recursion keeps its graph (phase-3 policy mean)."""
        x_aug, pad, y, z = self.prepare(x, mask)
        for _ in range(n_sup - 1):
            with torch.no_grad():
                y, z, _, _ = self.deep_recursion(x_aug, y, z, pad)
        y, z, pred, _ = self.deep_recursion(x_aug, y.detach(), z.detach(), pad)
        return pred


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
    """Exponential moving average of parameters: shadow <- decay * shadow + (1 - decay) * param."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the EMA weights (the weights used for evaluation)."""
        out = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in out.named_parameters():
                if k in self.shadow:
                    p.copy_(self.shadow[k])
        return out
