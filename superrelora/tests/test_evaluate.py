"""Evaluation: [batch, time] batches, pads masked, hand-computed CE, padding invariance, legacy inflation.

    python -m pytest tests/test_evaluate.py -q
"""

import math

import torch
import torch.nn.functional as F

from shared_utils.models import tiny_llama
from superrelora.data import PadCollator, tokenize_rows
from superrelora.evaluate import evaluate_text, evaluate_token_rows, legacy_eval
from superrelora.tokenizer import ByteTokenizer

ROWS = ["The river crosses the valley in spring .", "A quiet library", "Our village faces the old mill at dusk ."]


def brute_force(model, token_rows):
    """Per-sequence, per-token loop: no batching, no padding."""
    nll, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for row in token_rows:
            ids = torch.tensor([row["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            for t in range(ids.size(1) - 1):
                nll += float(F.cross_entropy(logits[t][None], ids[0, t + 1][None]))
                correct += int(logits[t].argmax() == ids[0, t + 1])
                n += 1
    return nll, correct, n


def test_padded_batched_eval_equals_per_token_brute_force():
    model, tok = tiny_llama(seed=0, vocab_size=259), ByteTokenizer()
    rows = tokenize_rows(tok, ROWS, max_length=64)
    got = evaluate_token_rows(model, rows, batch_size=3, pad_token_id=0)
    nll, correct, n = brute_force(model, rows)
    assert got["n_tokens"] == n == sum(len(r["input_ids"]) - 1 for r in rows)
    assert math.isclose(got["nll_sum"], nll, rel_tol=1e-5)
    assert math.isclose(got["loss"], nll / n, rel_tol=1e-5)
    assert math.isclose(got["perplexity"], math.exp(nll / n), rel_tol=1e-5)
    assert math.isclose(got["accuracy"], correct / n)


def test_padding_invariance_alone_vs_in_batch():
    model, tok = tiny_llama(seed=1, vocab_size=259), ByteTokenizer()
    rows = tokenize_rows(tok, ROWS, max_length=64)
    alone = sum(evaluate_token_rows(model, [r], 1, 0)["nll_sum"] for r in rows)
    batched = evaluate_token_rows(model, rows, 3, 0)["nll_sum"]
    assert math.isclose(alone, batched, rel_tol=1e-5)


def test_collator_masks_pads_by_attention_not_pad_id():
    batch = PadCollator(pad_token_id=2)([{"input_ids": [5, 2, 7]}, {"input_ids": [9]}])  # id 2 = eos = pad
    assert batch["input_ids"].shape == (2, 3)
    assert batch["labels"].tolist() == [[5, 2, 7], [9, -100, -100]]  # the real eos stays a target


def test_legacy_eval_reproduces_inflated_numbers():
    model, tok = tiny_llama(seed=0, vocab_size=259), ByteTokenizer()
    rows = [r * 3 for r in ROWS] * 6  # 18 rows, padded to 64: the [seq_len, batch] bug applies (64 >= 16)
    good = evaluate_text(model, tok, rows, max_length=64, batch_size=16, stream=False)
    bad = legacy_eval(model, tok, rows, max_length=64, batch_size=16)
    # normaliser bug: per-batch mean x seq_len / non-pad count -> a different scale from the true per-token loss
    assert abs(bad["loss"] - good["loss"]) > 0.5
    assert math.isclose(bad["perplexity"], math.exp(bad["loss"]), rel_tol=1e-6)
