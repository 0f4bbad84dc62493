"""GRPO pieces with TRL's formulas and metric names, for the latent-action policy of phase 3 (spec 4.3-4.4).

Policy: pi_theta(a | q) = N(mu_theta(q), sigma^2 I) over the D'-dim reasoning latent (mu = SequenceTRM output).
    advantage   A_i = (r_i - mean_g r) / (std_g r + 1e-4)          (TRL scale_rewards="group", unbiased std)
    ratio       rho_i = exp(log pi_theta(a_i) - log pi_old(a_i))
    loss        -mean_i min(rho_i A_i, clip(rho_i, 1 - eps_low, 1 + eps_high) A_i) + beta * KL
    KL          ||mu_theta - mu_ref||^2 / (2 sigma^2)   (exact for two Gaussians with equal sigma)
Answer extraction follows [LT] src/evaluation/gsm8k.py (patterns in order, commas stripped).

    python -m pytest tests/test_grpo.py -q
"""

from __future__ import annotations

import math
import re

import torch

ADV_EPS = 1e-4  # TRL adds this to the group std


def group_advantages(rewards: torch.Tensor, scale_rewards: str = "group") -> tuple[torch.Tensor, float]:
    """rewards [P, G] -> (advantages [P, G], frac_reward_zero_std) exactly as TRL computes them."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased, as torch.std / TRL
    adv = rewards - mean
    if scale_rewards == "group":
        adv = adv / (std + ADV_EPS)
    elif scale_rewards == "batch":
        adv = adv / (rewards.std() + ADV_EPS)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards}")
    zero = (std.squeeze(1) < 1e-8).float().mean().item()
    return adv, zero


def gaussian_logprob(a: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(a; mu, sigma^2 I), summed over the last dim."""
    d = a.shape[-1]
    return -((a - mu) ** 2).sum(-1) / (2 * sigma**2) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, mu_ref: torch.Tensor, sigma: float) -> torch.Tensor:
    """KL(N(mu, s^2 I) || N(mu_ref, s^2 I)) per row."""
    return ((mu - mu_ref) ** 2).sum(-1) / (2 * sigma**2)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The per-sample estimator DeepSeekMath / TRL use: exp(ref - logp) - (ref - logp) - 1 (always >= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float = 0.2,
                      eps_high: float | None = None) -> tuple[torch.Tensor, dict]:
    """-min(rho A, clip(rho) A) per sample, and TRL's clip_ratio metrics."""
    eps_high = eps_low if eps_high is None else eps_high
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * adv, clipped * adv)
    low = ((ratio < 1 - eps_low) & (adv < 0)).float()
    high = ((ratio > 1 + eps_high) & (adv > 0)).float()
    stats = {"clip_ratio/low_mean": low.mean().item(), "clip_ratio/low_min": low.min().item(),
             "clip_ratio/high_mean": high.mean().item(), "clip_ratio/high_max": high.max().item(),
             "clip_ratio/region_mean": (low + high).mean().item()}
    return loss, stats


def grpo_loss(mu: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, sigma: float,
              mu_ref: torch.Tensor | None = None, beta: float = 0.0, eps_low: float = 0.2,
              eps_high: float | None = None) -> tuple[torch.Tensor, dict]:
    """Latent-action GRPO loss.

    Args:
        mu: [P, D'] policy means (with graph). actions: [P, G, D'] sampled latents.
        old_logp, adv: [P, G]. mu_ref: [P, D'] frozen reference means (needed when beta > 0).
    """
    logp = gaussian_logprob(actions, mu.unsqueeze(1), sigma)
    per, stats = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    loss = per.mean()
    if beta > 0:
        kl = gaussian_kl(mu, mu_ref, sigma)
        loss = loss + beta * kl.mean()
        stats["kl"] = kl.mean().item()
    return loss, stats


_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_PATTERNS = (
    rf"####\s*({_NUM})",
    rf"\\boxed\{{\s*({_NUM})\s*\}}",
    rf"(?:answer|result|total|sum)\s*(?:is|=|:)\s*\$?\s*({_NUM})",
    rf"=\s*\$?\s*({_NUM})\s*\.?\s*$",
    rf"\$\s*({_NUM})\s*\.?\s*$",
)


def extract_answer(text: str) -> str | None:
    """[LT] answer extraction: only text after the last ``</think>``; patterns in order; else the last number."""
    text = text.split("</think>")[-1]
    for pat in _PATTERNS:
        m = re.search(pat, text, flags=re.IGNORECASE | re.MULTILINE)
        if m:
            return _clean(m.group(1))
    nums = re.findall(_NUM, text)
    return _clean(nums[-1]) if nums else None


def _clean(s: str) -> str:
    return s.replace(",", "").rstrip(".")


def is_correct(pred: str | None, gold: str) -> bool:
    """Float comparison with tolerance 1e-6, string equality as the fallback."""
    if pred is None:
        return False
    try:
        return abs(float(pred) - float(gold)) < 1e-6
    except ValueError:
        return pred.strip() == str(gold).strip()
