"""Metrics shared by the projects.

Token-level language-model metrics shift logits and labels by one and ignore padding (``labels == -100``
or ``attention_mask == 0``); they return sums and counts so that callers aggregate over batches by
predicted token, never by averaging per-batch means.
"""

from __future__ import annotations

import math
from typing import Sequence

from shared_utils.answers import answers_match

IGNORE_INDEX = -100


def exact_match(preds: Sequence[str], golds: Sequence[str], numeric: bool = True) -> float:
    """Fraction of exact matches (numeric comparison after normalisation by default)."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} references")
    if not golds:
        return 0.0
    if numeric:
        hits = sum(answers_match(p, g) for p, g in zip(preds, golds))
    else:
        hits = sum(str(p).strip() == str(g).strip() for p, g in zip(preds, golds))
    return hits / len(golds)


def shift_labels(input_ids, attention_mask=None, labels=None):
    """Labels for next-token prediction: ``labels`` (or input_ids) with padding set to IGNORE_INDEX."""
    out = (labels if labels is not None else input_ids).clone()
    if attention_mask is not None:
        out = out.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return out


def token_nll(logits, labels, attention_mask=None):
    """Summed next-token NLL, correct-prediction count and predicted-token count over a batch.

    Args:
        logits: [B, T, V] from a causal LM.
        labels: [B, T] token ids aligned with the inputs (not yet shifted); IGNORE_INDEX marks no-loss positions.
        attention_mask: optional [B, T]; zeros are padding and are ignored as targets.

    Returns:
        (nll_sum, n_correct, n_tokens) as Python numbers.
    """
    import torch.nn.functional as F

    labels = shift_labels(labels, attention_mask)
    logits = logits[:, :-1, :].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    correct = ((logits.argmax(-1) == target) & mask).sum()
    return float(nll), int(correct), int(mask.sum())


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean NLL per predicted token); inf when the mean overflows."""
    if n_tokens <= 0:
        raise ValueError("perplexity of zero tokens")
    mean = nll_sum / n_tokens
    return math.exp(mean) if mean < 700 else float("inf")


def _masked(x, mask):
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    return x[mask.bool()]


def cosine_similarity(a, b, mask=None) -> float:
    """Mean cosine similarity over vectors (last dim), only where ``mask`` (shape a.shape[:-1]) is true."""
    import torch.nn.functional as F

    a, b = _masked(a, mask).float(), _masked(b, mask).float()
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def mse(a, b, mask=None) -> float:
    """Mean squared error over all elements of the selected vectors."""
    a, b = _masked(a, mask).float(), _masked(b, mask).float()
    return float(((a - b) ** 2).mean())


def relative_error(pred, target, mask=None, eps: float = 1e-8) -> float:
    """||pred - target||_F / ||target||_F over the selected vectors."""
    p, t = _masked(pred, mask).float(), _masked(target, mask).float()
    return float((p - t).norm() / (t.norm() + eps))
