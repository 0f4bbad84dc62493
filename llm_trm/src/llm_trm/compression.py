"""Phase-1 DimensionCompressor, its four metrics, and the truncated-SVD / centered-PCA references.

The compressor is one bias-free linear map W in R^{D' x D} with tied decoding ([LT] src/models/compression.py):
    encode  c = x W^T        [B, L, D]  -> [B, L, D']
    decode  x_hat = c W      [B, L, D'] -> [B, L, D]
For a map of the form x -> W^T W x with rank <= D', the MSE optimum is the projection onto the top-D' right
singular vectors of the *uncentered* token matrix (Eckart-Young; Baldi & Hornik 1989), so
:func:`svd_reference` is the exact ceiling a trained compressor can approach, never beat.

    python -m pytest tests/test_compression.py -q
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

METRIC_NAMES = ("mse", "cosine_similarity", "relative_error", "variance_ratio")


class DimensionCompressor(nn.Module):
    """Weight-tied linear compressor [B,L,D] -> [B,L,D'] -> [B,L,D], orthogonal init, no bias."""

    def __init__(self, d_model: int = 3072, d_compressed: int = 256):
        super().__init__()
        if not 0 < d_compressed <= d_model:
            raise ValueError(f"d_compressed must be in 1..{d_model} (d_model), got {d_compressed}")
        self.d_model = d_model
        self.d_compressed = d_compressed
        self.compress = nn.Linear(d_model, d_compressed, bias=False)
        # D' < D: orthogonal_ gives orthonormal rows, so W W^T = I and W^T W is a rank-D' projection at init.
        nn.init.orthogonal_(self.compress.weight)

    @property
    def compression_ratio(self) -> float:
        return self.d_model / self.d_compressed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compress(x)

    def decompress(self, c: torch.Tensor) -> torch.Tensor:
        # Tied decoder: apply W^T as the decoding matrix; cast so bf16 inputs meet an fp32 weight.
        return F.linear(c, self.compress.weight.t().to(c.dtype))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decompress(self.forward(x))

    def reconstruction_loss(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """MSE of the round trip; with ``mask`` [B,L] only real tokens count (the original included padding)."""
        return masked_mse(self.reconstruct(x), x, mask)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of (pred-target)^2 over all elements of the rows where ``mask`` is 1 (all rows if None)."""
    if mask is None:
        return F.mse_loss(pred, target)
    m = mask.to(pred.dtype).unsqueeze(-1)
    denom = m.sum() * pred.shape[-1]
    return ((pred - target) ** 2 * m).sum() / denom.clamp_min(1.0)


def _rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[..., D] -> [N, D] keeping only rows where mask is 1."""
    flat = x.reshape(-1, x.shape[-1])
    if mask is None:
        return flat
    return flat[mask.reshape(-1).bool()]


@torch.no_grad()
def compute_metrics(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """The four phase-1 metrics with the original's formulas ([LT] ``_compute_metrics``).

    - mse: mean squared error over the kept elements;
    - cosine_similarity: mean over token rows of cos(x_t, x_hat_t);
    - relative_error: ||x_hat - x||_F / ||x||_F over the whole kept tensor (not per token);
    - variance_ratio: mean over dims of var(x_hat_d) / (var(x_d) + 1e-8), unbiased variance over tokens.
    ``mask`` [B, L] drops padding rows; ``None`` reproduces the original (padding counted).
    """
    a = _rows(x.float(), mask)
    b = _rows(x_hat.float(), mask)
    cos = F.cosine_similarity(a, b, dim=-1).mean()
    rel = torch.linalg.norm(b - a) / torch.linalg.norm(a).clamp_min(1e-12)
    var_ratio = (b.var(dim=0) / (a.var(dim=0) + 1e-8)).mean()
    return {
        "mse": ((b - a) ** 2).mean().item(),
        "cosine_similarity": cos.item(),
        "relative_error": rel.item(),
        "variance_ratio": var_ratio.item(),
    }


def param_count(d_model: int, d_compressed: int) -> int:
    return d_model * d_compressed


@torch.no_grad()
def svd_reference(train_rows: torch.Tensor, ks: list[int], centered: bool = False) -> dict[int, dict]:
    """Optimal rank-k linear (uncentered SVD) or affine (centered PCA) reconstructions fitted on ``train_rows``.

    Args:
        train_rows: [N, D] token hidden states (padding already removed).
        ks: the ranks D' to fit.
        centered: False -> x_hat = V_k V_k^T x (the tied bias-free compressor's optimum);
            True -> x_hat = mu + V_k V_k^T (x - mu) (best rank-k affine map: the "add a bias" reference).
    Returns:
        {k: {"basis": V_k [D, k], "mean": mu [D] (zeros if not centered), "train_mse": float}}
        where train_mse = sum_{i>k} sigma_i^2 / (N D) exactly.
    """
    x = train_rows.double()
    mu = x.mean(0) if centered else torch.zeros(x.shape[1], dtype=x.dtype)
    _, s, vh = torch.linalg.svd(x - mu, full_matrices=False)
    n, d = x.shape
    out = {}
    for k in ks:
        tail = (s[k:] ** 2).sum().item()
        out[k] = {"basis": vh[:k].T.float(), "mean": mu.float(), "train_mse": tail / (n * d)}
    return out


def apply_reference(x: torch.Tensor, ref: dict) -> torch.Tensor:
    """x_hat = mu + V V^T (x - mu) for a :func:`svd_reference` entry."""
    v, mu = ref["basis"].to(x.dtype), ref["mean"].to(x.dtype)
    return mu + ((x - mu) @ v) @ v.T


def strip_compile_prefix(state_dict: dict) -> dict:
    """Drop the ``_orig_mod.`` prefix that ``torch.compile`` adds to state-dict keys."""
    return {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
