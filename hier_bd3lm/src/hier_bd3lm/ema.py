"""Exponential moving average of parameters with the bd3lms warm-up: decay_n = min(decay, (1 + n) / (10 + n))."""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, params, decay: float = 0.9999):
        self.decay = decay
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.num_updates = 0
        self._backup = None

    @torch.no_grad()
    def update(self):
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def store_and_copy(self):
        """Swap EMA weights in (call `restore` afterwards)."""
        self._backup = [p.detach().clone() for p in self.params]
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)

    @torch.no_grad()
    def restore(self):
        for b, p in zip(self._backup, self.params):
            p.copy_(b)
        self._backup = None

    def state_dict(self):
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state):
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the model")
        for s, v in zip(self.shadow, state["shadow"]):
            s.copy_(v)
