"""Semi-autoregressive sampling: block by block, with or without a KV cache, question (and plan) prefilled.

Diffusion (bd3lm): each block starts fully masked and is denoised with the first-hitting sampler (one token
per step at a uniformly chosen masked position, L' NFEs per block) or the DDPM-cache sampler (`T` steps per
block, the model is re-run only when a token changed). Then the clean block is passed once more to store its
keys/values (not counted as an NFE, as upstream). Without a cache every step re-runs [Q | clean blocks | block]
with `masks.inference_mask`; both paths draw random numbers in the same order, so they give the same tokens.
AR: token by token with a causal cache. Nucleus filtering with `nucleus_p` (1.0 = identity).

python -m pytest tests/test_sampling.py
"""

from __future__ import annotations

import time

import torch

from hier_bd3lm.masks import inference_mask

MODES = ("full", "plan_only", "exec_only")


def nucleus(probs, p: float):
    """Keep the smallest top set with cumulative mass >= p (the top token always survives); renormalise."""
    if p >= 1.0:
        return probs
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    keep = (sorted_p.cumsum(-1) - sorted_p) < p
    keep[..., 0] = True
    out = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
    return out / out.sum(-1, keepdim=True)


def _gumbel_pick(probs, generator):
    u = torch.rand(probs.shape, generator=generator, dtype=torch.float64, device=probs.device)
    g = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return (probs.double().log() + g).argmax(-1)


def block_ranges(model, mode: str) -> list[tuple[int, bool]]:
    """(block index, generate?) over the generated region; the rest is given context."""
    lay = model.layout
    n_plan = lay.plan_len // lay.block_size
    out = []
    for b in range(lay.n_blocks):
        in_plan = b < n_plan
        gen = mode == "full" or (mode == "plan_only" and in_plan) or (mode == "exec_only" and not in_plan)
        out.append((b, gen))
    if mode == "plan_only":  # nothing after the plan is needed
        out = [(b, g) for b, g in out if b < n_plan]
    return out


class Sampler:
    """sample(prefix) -> (tokens [B, L], stats). `prefix` holds the question (and the given segments)."""

    def __init__(self, model, nucleus_p: float = 1.0, kv_cache: bool = True, sampler: str = "first_hitting",
                 T: int = 0):
        if sampler not in ("first_hitting", "ddpm_cache"):
            raise ValueError(f"sampler must be first_hitting or ddpm_cache, got {sampler}")
        if sampler == "ddpm_cache" and T < 1:
            raise ValueError("algo.T must be >= 1 for the ddpm_cache sampler")
        self.model, self.p, self.kv_cache, self.sampler, self.T = model, nucleus_p, kv_cache, sampler, T

    @torch.no_grad()
    def sample(self, prefix, mode: str = "full", generator=None):
        if mode not in MODES:
            raise ValueError(f"sampling.hierarchical_mode must be one of {MODES}, got {mode}")
        t0 = time.perf_counter()
        x = prefix.clone()
        self.nfe, self._masks = 0, {}
        if self.model.algo == "ar":
            self._sample_ar(x, mode, generator)
        else:
            self._sample_bd3(x, mode, generator)
        return x, {"nfe": self.nfe, "seconds": time.perf_counter() - t0}

    # ------------------------------------------------------------------ BD3-LM
    def _bd3_logits(self, x, b, blk, cache):
        """Logits for noisy block b given [Q | blocks < b] (from the cache, or recomputed)."""
        lay, net = self.model.layout, self.model.backbone
        q, bs = lay.question_len, lay.block_size
        start = q + b * bs
        dev = x.device
        if cache is not None:  # the block sees the whole cache and itself: no mask needed
            return net(blk, torch.arange(start, start + bs, device=dev), None, cache=cache)
        if b not in self._masks:  # memoised so the no-cache path pays no avoidable overhead either
            self._masks[b] = inference_mask(lay, b).to(dev)
        ids = torch.cat([x[:, :start], blk], dim=1)
        return net(ids, torch.arange(start + bs, device=dev), self._masks[b],
                   out_idx=torch.arange(start, start + bs, device=dev))

    def _store(self, cache, x, start, end):
        if cache is None:
            return
        net, dev = self.model.backbone, x.device
        net(x[:, start:end], torch.arange(start, end, device=dev), None, cache=cache, store=True)

    def _sample_bd3(self, x, mode, generator):
        lay, mid = self.model.layout, self.model.mask_id
        q, bs = lay.question_len, lay.block_size
        cache = self.model.backbone.new_cache() if self.kv_cache else None
        self._store(cache, x, 0, q)  # prefill the clean, bidirectional question (pitfall P6)
        for b, gen in block_ranges(self.model, mode):
            start = q + b * bs
            if gen:
                blk = torch.full_like(x[:, start:start + bs], mid)
                blk = self._denoise_block(x, b, blk, cache, generator)
                x[:, start:start + bs] = blk
            self._store(cache, x, start, start + bs)

    def _probs(self, logits):
        return nucleus(self.model.subs_log_probs(logits).exp(), self.p)

    def _denoise_block(self, x, b, blk, cache, generator):
        mid = self.model.mask_id
        if self.sampler == "first_hitting":
            rows = torch.arange(blk.shape[0], device=blk.device)
            for _ in range(blk.shape[1]):
                logits = self._bd3_logits(x, b, blk, cache)
                self.nfe += 1
                # choose one masked position per row uniformly (batch-friendly: no .item(), pitfall P4)
                score = torch.rand(blk.shape, generator=generator, device=blk.device)
                score = score.masked_fill(blk != mid, -1.0)
                j = score.argmax(-1)
                tok = _gumbel_pick(self._probs(logits[rows, j]), generator)  # only the chosen position
                blk = blk.clone()
                blk[rows, j] = tok
            return blk
        probs, changed = None, True
        ts = torch.linspace(1.0, 0.0, self.T + 1)
        for i in range(self.T):
            if changed or probs is None:  # no time conditioning: reuse the logits when nothing changed
                probs = self._probs(self._bd3_logits(x, b, blk, cache))
                self.nfe += 1
            t, s = ts[i].item(), ts[i + 1].item()
            move = 1.0 if s == 0.0 else (t - s) / t  # loglinear: P(unmask now | masked at t)
            tok = _gumbel_pick(probs, generator)
            u = torch.rand(blk.shape, generator=generator, device=blk.device)
            new = torch.where((blk == mid) & (u < move), tok, blk)
            changed = bool((new != blk).any())
            blk = new
        return blk

    # ------------------------------------------------------------------ AR
    def _sample_ar(self, x, mode, generator):
        lay, net, dev = self.model.layout, self.model.backbone, x.device
        q = lay.question_len
        first = q if mode != "exec_only" else q + lay.plan_len
        last = lay.total_len if mode != "plan_only" else q + lay.plan_len
        cache = net.new_cache() if self.kv_cache else None
        causal = torch.ones(last, last, dtype=torch.bool, device=dev).tril()
        if cache is not None:
            n = first - 1
            net(x[:, :n], torch.arange(n, device=dev), causal[:n, :n], cache=cache, store=True)
        for i in range(first, last):
            if cache is not None:  # one new token sees the whole cache
                logits = net(x[:, i - 1:i], torch.arange(i - 1, i, device=dev), None, cache=cache, store=True)
            else:
                logits = net(x[:, :i], torch.arange(i, device=dev), causal[:i, :i],
                             out_idx=torch.tensor([i - 1], device=dev))
            self.nfe += 1
            probs = nucleus(logits[:, -1].float().softmax(-1), self.p)
            probs[..., self.model.mask_id] = 0.0
            x[:, i] = _gumbel_pick(probs / probs.sum(-1, keepdim=True), generator)
