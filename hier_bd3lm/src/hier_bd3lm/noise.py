"""Noise schedules of bd3lms (noise_schedule.py): each maps t in [0, 1] to (loss_scaling, move_chance).

move_chance is the probability that a token is MASK at time t; loss_scaling = alpha'_t / (1 - alpha_t) (< 0),
so a masked token's cross-entropy is weighted by -loss_scaling (1/t for the default log-linear schedule).

python -m pytest tests/test_diffusion.py -k noise
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("loglinear", "square", "square_root", "log", "cosine")


class Noise:
    def __init__(self, kind: str = "loglinear", eps: float = 1e-3):
        if kind not in SCHEDULES:
            raise ValueError(f"noise.type must be one of {SCHEDULES}, got {kind}")
        self.kind, self.eps = kind, eps

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = self.eps
        if self.kind == "loglinear":
            return -1.0 / t, t
        if self.kind in ("square", "square_root"):
            p = 2.0 if self.kind == "square" else 0.5
            move = torch.clamp(t ** p, min=eps)
            return -p * t ** (p - 1) / move, move
        if self.kind == "log":
            move = torch.log1p(t) / math.log(2)
            return -1.0 / (move * math.log(2) * (1 + t)), move
        move = 1 - (1 - eps) * torch.cos(t * math.pi / 2)
        return -(1 - eps) * torch.sin(t * math.pi / 2) / (move + eps) * math.pi / 2, move

    def total_noise(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t) = -log(1 - (1 - eps) t) of the log-linear schedule (used only for time conditioning)."""
        return -torch.log1p(-(1 - self.eps) * t)
