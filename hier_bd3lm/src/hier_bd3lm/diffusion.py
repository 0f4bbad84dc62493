"""BD3-LM objective on the hierarchical layout, the AR baseline loss, and the clipped-schedule search.

Sequences are in natural order x0 = [Q | P | E] (P empty for Flat). For BD3-LM one forward pass runs on the
2-copy input [Q | P_xt | P_x0 | E_xt | E_x0] with the mask of masks.py and shared rotary positions; only the
noisy copies are sent through the output layer (pitfall P7). SUBS parameterisation: MASK is never predicted
and unmasked positions carry zero loss, so the per-token loss is -loss_scaling(t) * CE at masked positions.
The batch loss is sum(loss * loss_mask) / sum(loss_mask) as in bd3lms `_loss`.

python -m pytest tests/test_diffusion.py
"""

from __future__ import annotations

import torch
from torch import nn

from hier_bd3lm.masks import NOISY, Layout, training_attributes, training_mask
from hier_bd3lm.model import DiT
from hier_bd3lm.noise import Noise


class BlockDiffusion(nn.Module):
    """Backbone + layout + schedule. `algo` is "bd3lm" (block diffusion) or "ar" (causal next-token)."""

    def __init__(self, backbone: DiT, layout: Layout, mask_id: int, algo: str = "bd3lm",
                 noise: Noise | None = None, antithetic: bool = True, eps_min: float = 1e-3,
                 eps_max: float = 1.0, resample: bool = False, exec_sees_noisy_plan: bool = False):
        super().__init__()
        if algo not in ("bd3lm", "ar"):
            raise ValueError(f"algo must be bd3lm or ar, got {algo}")
        self.backbone, self.layout, self.mask_id, self.algo = backbone, layout, mask_id, algo
        self.noise = noise or Noise()
        self.antithetic, self.resample = antithetic, resample
        # Clipped-schedule interval; buffers so that they are saved in checkpoints (bd3lms does the same).
        self.register_buffer("sampling_eps_min", torch.tensor(float(eps_min)), persistent=True)
        self.register_buffer("sampling_eps_max", torch.tensor(float(eps_max)), persistent=True)
        a = training_attributes(layout)
        self.register_buffer("train_pos", a["pos"], persistent=False)
        self.register_buffer("train_src", a["src"], persistent=False)
        self.register_buffer("train_is_noisy", a["kind"] == NOISY, persistent=False)
        self.register_buffer("noisy_idx", torch.nonzero(a["kind"] == NOISY).flatten(), persistent=False)
        self.register_buffer("train_mask", training_mask(layout, exec_sees_noisy_plan), persistent=False)
        n = layout.total_len
        self.register_buffer("causal_mask", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)

    # ---------------------------------------------------------------- noising
    def sample_t(self, batch: int, eps_min: float, eps_max: float, generator=None) -> torch.Tensor:
        """One time per (sequence, block); antithetic draws cover each of the B*n strata once."""
        nb = self.layout.n_blocks
        n = batch * nb
        u = torch.rand(n, generator=generator, device=self.train_pos.device)
        if self.antithetic:
            u = (u / n + torch.arange(n, device=u.device) / n) % 1
        return (eps_min + u * (eps_max - eps_min)).view(batch, nb)

    def q_xt(self, x_gen, move_chance, generator=None, rows=None):
        """Replace each generated token by MASK with probability move_chance (per token).

        `rows = (start, total)`: draw the noise of a `total`-row global batch and keep rows start.. (data-parallel
        ranks then draw exactly what one process with the whole batch draws)."""
        if rows is None:
            u = torch.rand(x_gen.shape, generator=generator, device=x_gen.device)
        else:
            u = torch.rand((rows[1], x_gen.shape[1]), generator=generator, device=x_gen.device)
            u = u[rows[0]:rows[0] + x_gen.shape[0]]
        masked = u < move_chance
        if self.resample and (float(self.sampling_eps_min) > 1e-3 or float(self.sampling_eps_max) < 1.0):
            masked = self._resample(masked, generator)
        return torch.where(masked, torch.full_like(x_gen, self.mask_id), x_gen), masked

    def _resample(self, masked, generator, max_iter: int = 100):
        """Re-draw blocks whose realised masked fraction lies outside [eps_min, eps_max] (bd3lms `_resample_q_xt`)."""
        lo, hi = float(self.sampling_eps_min), float(self.sampling_eps_max)
        B, L = masked.shape
        bs = self.layout.block_size
        blocks = masked.view(B, L // bs, bs)
        for _ in range(max_iter):
            frac = blocks.float().mean(-1)
            bad = ((frac < lo) if lo > 1e-3 else torch.zeros_like(frac, dtype=torch.bool))
            bad = bad | ((frac > hi) if hi < 1.0 else torch.zeros_like(bad))
            if not bad.any():
                break
            rate = torch.empty(bad.shape, device=masked.device).uniform_(lo, hi, generator=generator)
            fresh = torch.rand(blocks.shape, generator=generator, device=masked.device) < rate[..., None]
            blocks = torch.where(bad[..., None], fresh, blocks)
        return blocks.reshape(B, L)

    # ---------------------------------------------------------------- forward passes
    def train_logits(self, x0, xt_gen):
        """Logits at the noisy copies (natural generated order) from one pass over the 2-copy input."""
        q = self.layout.question_len
        full_xt = torch.cat([x0[:, :q], xt_gen], dim=1)
        ids = torch.where(self.train_is_noisy[None], full_xt[:, self.train_src], x0[:, self.train_src])
        return self.backbone(ids, self.train_pos, self.train_mask, out_idx=self.noisy_idx)

    def subs_log_probs(self, logits):
        """SUBS: MASK logit -> -inf, then log-normalise."""
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32)).clone()
        logits[..., self.mask_id] = float("-inf")
        return logits.log_softmax(-1)

    def token_losses(self, x0, generator=None, eps_min=None, eps_max=None, rows=None):
        """Per generated token loss [B, G] (NELBO terms for bd3lm, next-token NLL for ar)."""
        if self.algo == "ar":
            return self._ar_token_losses(x0)
        eps_min = float(self.sampling_eps_min) if eps_min is None else eps_min
        eps_max = float(self.sampling_eps_max) if eps_max is None else eps_max
        q, bs = self.layout.question_len, self.layout.block_size
        x_gen = x0[:, q:]
        if rows is None:
            t = self.sample_t(x0.shape[0], eps_min, eps_max, generator)
        else:  # this rank's rows of the global batch's draws
            t = self.sample_t(rows[1], eps_min, eps_max, generator)[rows[0]:rows[0] + x0.shape[0]]
        t = t.repeat_interleave(bs, dim=1)
        loss_scale, move = self.noise(t)
        if eps_min > 0.5:  # "tuned" U[1, 1] schedule: everything masked, weight 1 (= AR CE for L' = 1)
            move, loss_scale = torch.ones_like(t), -torch.ones_like(t)
        xt_gen, masked = self.q_xt(x_gen, move, generator, rows)
        logp = self.subs_log_probs(self.train_logits(x0, xt_gen))
        nll = -logp.gather(-1, x_gen[..., None]).squeeze(-1)
        return torch.where(masked, -loss_scale * nll, torch.zeros_like(nll))

    def _ar_token_losses(self, x0):
        q = self.layout.question_len
        n = self.layout.total_len
        pos = torch.arange(n, device=x0.device)
        logits = self.backbone(x0, pos, self.causal_mask, out_idx=torch.arange(q - 1, n - 1, device=x0.device))
        logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
        return -logp.gather(-1, x0[:, q:, None]).squeeze(-1)

    def loss(self, x0, loss_mask, generator=None, eps_min=None, eps_max=None, rows=None, denom=None):
        """Scalar training loss: sum(token_loss * loss_mask) / sum(loss_mask) over the generated region.

        Data parallel: `rows` selects this rank's share of the global batch's noise draws and `denom` is the
        global sum(loss_mask) (so that the ranks' losses add up to the one-process loss)."""
        tok = self.token_losses(x0, generator, eps_min, eps_max, rows)
        m = loss_mask[:, self.layout.question_len:].to(tok.dtype)
        return (tok * m).sum() / (m.sum() if denom is None else denom).clamp_min(1.0)

    forward = loss  # so that DistributedDataParallel can wrap the model and hook its gradients

    # ---------------------------------------------------------------- clipped schedule search
    def candidate_intervals(self, widths, delta: float = 0.05) -> list[tuple[float, float]]:
        cands = [(1e-3, 1.0)]
        for w in widths:
            i = 0.0
            while i <= 1 - w + 1e-9:
                cands.append((round(i, 6), round(i + w, 6)))
                i += delta
        return cands

    @torch.no_grad()
    def clip_search(self, batches, widths, delta: float = 0.05, fix_clipping: bool = False, seed: int = 0):
        """Pick the interval whose per-block mean losses have the smallest variance (bd3lms `_clipped_schedule_search`).

        `batches` is a list of (x0, loss_mask). Updates the eps buffers unless `fix_clipping`. Returns
        (best_interval, {interval: variance}).
        """
        scores = {}
        bs = self.layout.block_size
        for lo, hi in self.candidate_intervals(widths, delta):
            g = torch.Generator(device=self.train_pos.device).manual_seed(seed)
            per_block = []
            for x0, lm in batches:
                tok = self.token_losses(x0, g, lo, hi) * lm[:, self.layout.question_len:]
                per_block.append(tok.view(tok.shape[0], -1, bs).mean(-1).flatten())
            scores[(lo, hi)] = torch.cat(per_block).var().item()
        best = min(scores, key=scores.get)
        if not fix_clipping:
            self.sampling_eps_min.fill_(best[0])
            self.sampling_eps_max.fill_(best[1])
        return best, scores
