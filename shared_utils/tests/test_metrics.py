"""python -m pytest tests/test_metrics.py"""

import math

import numpy as np
import pytest
import torch

from shared_utils.metrics import (
    IGNORE_INDEX,
    cosine_similarity,
    exact_match,
    mse,
    perplexity,
    relative_error,
    token_nll,
)


def brute_force_nll(logits, input_ids, attention_mask):
    """Per-sequence loop: position t predicts token t+1 when both are real tokens."""
    nll, correct, n = 0.0, 0, 0
    logp = torch.log_softmax(logits.double(), -1)
    for b in range(input_ids.shape[0]):
        for t in range(input_ids.shape[1] - 1):
            if attention_mask[b, t + 1] == 0:
                continue
            target = int(input_ids[b, t + 1])
            nll -= float(logp[b, t, target])
            correct += int(int(logits[b, t].argmax()) == target)
            n += 1
    return nll, correct, n


def test_token_nll_matches_brute_force_with_right_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    ids = torch.randint(0, 11, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    nll, correct, n = token_nll(logits, ids, mask)
    ref = brute_force_nll(logits, ids, mask)
    assert n == ref[2] == 6 + 3 + 1
    assert correct == ref[1]
    assert nll == pytest.approx(ref[0], rel=1e-5)


def test_token_nll_respects_ignore_index_labels():
    logits = torch.zeros(1, 4, 5)  # uniform: every predicted token costs log 5
    labels = torch.tensor([[1, IGNORE_INDEX, 2, 3]])
    nll, _, n = token_nll(logits, labels)
    assert n == 2 and nll == pytest.approx(2 * math.log(5), rel=1e-6)


def test_perplexity():
    assert perplexity(2 * math.log(5), 2) == pytest.approx(5.0)
    assert perplexity(1e6, 1) == float("inf")
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_vector_metrics_against_numpy_with_mask():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    A, B = a.numpy()[mask.bool().numpy()], b.numpy()[mask.bool().numpy()]
    cos = np.mean(np.sum(A * B, -1) / (np.linalg.norm(A, axis=-1) * np.linalg.norm(B, axis=-1)))
    assert cosine_similarity(a, b, mask) == pytest.approx(cos, rel=1e-5)
    assert mse(a, b, mask) == pytest.approx(np.mean((A - B) ** 2), rel=1e-5)
    assert relative_error(a, b, mask) == pytest.approx(np.linalg.norm(A - B) / np.linalg.norm(B), rel=1e-5)
    assert cosine_similarity(a, a) == pytest.approx(1.0, abs=1e-6)
    assert mse(a, a) == 0.0


def test_exact_match():
    assert exact_match(["72", "1,000", "[invalid]"], ["72", "1000", "5"]) == pytest.approx(2 / 3)
    assert exact_match(["a "], ["a"], numeric=False) == 1.0
    with pytest.raises(ValueError):
        exact_match(["1"], [])
