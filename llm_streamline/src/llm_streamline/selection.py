"""Which block to remove: LLM-Streamline cosine scores and the ShortGPT Block Influence baseline.

Residual-stream convention used everywhere here: ``hs[k]`` is the hidden state *entering* layer k (k = 0..L-1)
and ``hs[L]`` is the output of the last layer **before** the final norm. Hugging Face's
``output_hidden_states`` returns the post-norm state as its last entry, so the original compared a block
ending at the last layer against a normalised target (spec bug 10); capturing layer inputs/outputs with hooks
avoids that, and lets a forward pass stop as soon as the last needed layer has run.

Scores (spec 2.2): for n = ``layer_intervals`` the block j..j+n (n+1 layers) is later replaced by one layer,
so ``score[j] = mean over samples of mean over tokens of 0.5 + 0.5 * cos(hs[j][t], hs[j+n+1][t])`` for
j = 0..L-n-1; the best block is the first argmax. The original formed the full T x T cosine matrix and took its
trace / T, which is the same number (only same-position pairs count).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llm_streamline.adapters import get_adapter
from shared_utils.errors import UserError


class _StopForward(Exception):
    """Raised from a hook once every requested hidden state is captured (skips the rest of the model)."""


def _hidden_arg(args, kwargs):
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _layer_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def residual_states(model, input_ids, attention_mask=None, indices: Iterable[int] | None = None) -> dict[int, torch.Tensor]:
    """Hidden states ``{k: hs[k]}`` for the requested residual indices (default all 0..L), stopping early.

    Args:
        model: a causal LM supported by :mod:`llm_streamline.adapters`.
        input_ids, attention_mask: [B, T] batch.
        indices: residual indices in 0..L (L = number of layers); hs[L] is the pre-norm last-layer output.
    """
    layers = get_adapter(model).layers(model)
    n_layers = len(layers)
    wanted = sorted(set(range(n_layers + 1) if indices is None else indices))
    if not wanted or wanted[0] < 0 or wanted[-1] > n_layers:
        raise UserError(f"residual indices must be in 0..{n_layers}, got {wanted}")
    captured: dict[int, torch.Tensor] = {}
    last = wanted[-1]
    handles = []

    def pre_hook(k):
        def hook(_module, args, kwargs):
            captured[k] = _hidden_arg(args, kwargs).detach()
            if k == last:
                raise _StopForward
        return hook

    def post_hook(_module, _args, _kwargs, out):
        captured[n_layers] = _layer_output(out).detach()
        raise _StopForward

    for k in wanted:
        if k < n_layers:
            handles.append(layers[k].register_forward_pre_hook(pre_hook(k), with_kwargs=True))
    if last == n_layers:
        handles.append(layers[-1].register_forward_hook(post_hook, with_kwargs=True))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return {k: captured[k] for k in wanted}


def _token_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean over valid tokens: values [B, T] -> [B]."""
    if mask is None:
        return values.mean(dim=1)
    m = mask.to(values.dtype)
    return (values * m).sum(1) / m.sum(1).clamp_min(1)


def block_scores_per_sample(hs: list[torch.Tensor], n: int, mask: torch.Tensor | None = None, k: int = 1) -> torch.Tensor:
    """[B, L-n-k+1] scores 0.5 + 0.5 * cos(hs[j], hs[j+n+k]) averaged over tokens, for every candidate j.

    The block j..j+n+k-1 (n+k layers) is later replaced by k layers; k = 1 is the original (hs[j] vs hs[j+n+1]).
    """
    n_layers = len(hs) - 1
    check_interval(n, n_layers, k)
    span = n + k
    cols = []
    for j in range(n_layers - span + 1):
        cos = F.cosine_similarity(hs[j].float(), hs[j + span].float(), dim=-1)  # [B, T]
        cols.append(_token_mean(0.5 + 0.5 * torch.nan_to_num(cos, nan=0.0, posinf=0.0, neginf=0.0), mask))
    return torch.stack(cols, dim=1)


def block_influence_per_sample(hs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L] ShortGPT Block Influence BI_i = 1 - cos(hs[i], hs[i+1]) averaged over tokens (icip-cas/ShortGPT)."""
    cols = [_token_mean(1 - F.cosine_similarity(hs[i].float(), hs[i + 1].float(), dim=-1), mask) for i in range(len(hs) - 1)]
    return torch.stack(cols, dim=1)


def check_interval(n: int, n_layers: int, k: int = 1) -> None:
    if not 1 <= n <= n_layers - k:
        raise UserError(f"layer_intervals must be in 1..{n_layers - k} for a {n_layers}-layer model "
                        f"with {k} lightweight layer(s), got {n}")


def best_block(scores) -> int:
    """First index of the maximum score (torch.argmax semantics of the original)."""
    scores = torch.as_tensor(scores)
    return int(torch.nonzero(scores == scores.max())[0, 0])


def lowest_influence_layers(bi, n: int) -> list[int]:
    """ShortGPT: the n layers with the lowest Block Influence (ties -> lower index), sorted."""
    bi = torch.as_tensor(bi, dtype=torch.float64)
    order = sorted(range(len(bi)), key=lambda i: (float(bi[i]), i))
    return sorted(order[:n])


@torch.no_grad()
def score_blocks(model, batches, n: int, k: int = 1, desc: str = "cosine scores") -> dict:
    """Mean block scores and Block Influence over all sequences of ``batches`` (dicts with input_ids/attention_mask).

    Returns ``{"scores": [L-n-k+1 floats], "best_layer": j, "block_influence": [L floats], "num_sequences": N}``.
    """
    model.eval()
    n_layers = len(get_adapter(model).layers(model))
    check_interval(n, n_layers, k)
    score_sum = torch.zeros(n_layers - n - k + 1, dtype=torch.float64)
    bi_sum = torch.zeros(n_layers, dtype=torch.float64)
    count = 0
    for batch in tqdm(batches, desc=desc, leave=False):
        mask = batch.get("attention_mask")
        states = residual_states(model, batch["input_ids"], mask)
        hs = [states[k] for k in range(n_layers + 1)]
        score_sum += block_scores_per_sample(hs, n, mask, k).double().sum(0).cpu()
        bi_sum += block_influence_per_sample(hs, mask).double().sum(0).cpu()
        count += batch["input_ids"].shape[0]
    if count == 0:
        raise UserError("no calibration sequences for the cosine scores (cosine_num_data is 0 or the data is empty)")
    scores = (score_sum / count).tolist()
    return {
        "scores": scores,
        "best_layer": best_block(scores),
        "block_influence": (bi_sum / count).tolist(),
        "num_sequences": count,
    }
