"""Correct evaluation (token-level loss, perplexity, next-token accuracy) and the original's buggy one.

Protocol a (README-faithful): the first ``num_eval_samples`` non-empty validation rows, each truncated to
``eval_max_length`` tokens, batches ``[batch, time]`` padded to the longest row, pads masked out of the targets,
NLL summed over every predicted token and divided by their count; ppl = exp(mean NLL); accuracy = top-1 of the
shifted logits over the same positions. Protocol b: contiguous ``eval_max_length``-token blocks of the
concatenated text (no padding).

``legacy_eval`` reproduces the original's three bugs (``[seq_len, batch]`` layout, pads in the labels, mean x size(0)
/ non-pad count) so the README's perplexity of ~29,000 can be explained. Never the default.

    python scripts/evaluate.py --run_dir runs/smoke
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from shared_utils.metrics import perplexity, token_nll
from superrelora.data import PadCollator, batches, stream_blocks, tokenize_rows


@torch.no_grad()
def evaluate_token_rows(model, token_rows: list[dict], batch_size: int, pad_token_id: int, desc: str = "eval") -> dict:
    """Loss / perplexity / accuracy over token rows, normalised per predicted (non-pad, shifted) token."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nll = correct = count = 0
    for batch in tqdm(batches(token_rows, batch_size, PadCollator(pad_token_id)), desc=desc, leave=False):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        assert ids.dim() == 2 and ids.shape == mask.shape, "eval batches must be [batch, time]"
        logits = model(input_ids=ids, attention_mask=mask).logits
        s, c, n = token_nll(logits, ids, mask)
        nll, correct, count = nll + s, correct + c, count + n
    model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "perplexity": float("nan"), "accuracy": float("nan"), "n_tokens": 0}
    return {"loss": nll / count, "perplexity": perplexity(nll, count), "accuracy": correct / count,
            "n_tokens": count, "nll_sum": nll}


def evaluate_text(model, tokenizer, rows: list[str], max_length: int = 64, batch_size: int = 16,
                  stream: bool = True, legacy: bool = False) -> dict:
    """Protocol a (and b / legacy on request) on the given validation text rows."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = evaluate_token_rows(model, tokenize_rows(tokenizer, rows, max_length), batch_size, pad, "eval (rows)")
    if stream:
        blocks = stream_blocks(tokenizer, rows, max_length, limit_blocks=len(rows))
        b = evaluate_token_rows(model, blocks, batch_size, pad, "eval (stream)")
        out.update({f"stream_{k}": v for k, v in b.items()})
    if legacy:
        out.update({f"legacy_{k}": v for k, v in legacy_eval(model, tokenizer, rows, max_length, batch_size).items()})
    return out


@torch.no_grad()
def legacy_eval(model, tokenizer, rows: list[str], max_length: int = 64, batch_size: int = 16) -> dict:
    """The original eval script, bugs included (spec 3.2): do not use for anything but explaining the README."""
    model.eval()
    device = next(model.parameters()).device
    enc = [tokenizer(t, truncation=True, max_length=max_length, padding="max_length") for t in rows]
    loss_x_size = 0.0
    tokens = correct = 0
    for i in range(0, len(enc), batch_size):
        chunk = enc[i : i + batch_size]
        # Bug 1: a DataLoader over list columns yields seq_len tensors of shape [batch]; stacked -> [seq_len, batch].
        ids = torch.stack([torch.tensor([e["input_ids"][t] for e in chunk]) for t in range(max_length)])
        mask = torch.stack([torch.tensor([e["attention_mask"][t] for e in chunk]) for t in range(max_length)])
        if ids.size(0) < ids.size(1):  # the original "fixed" the orientation only in this case
            ids, mask = ids.T.contiguous(), mask.T.contiguous()
        ids, mask = ids.to(device), mask.to(device)
        out = model(input_ids=ids, attention_mask=mask, labels=ids)  # Bug 2: pads are targets
        n = int(mask[:, 1:].sum())
        hit = (out.logits[:, :-1].argmax(-1) == ids[:, 1:]) & (mask[:, 1:] == 1)
        loss_x_size += float(out.loss) * ids.size(0)  # Bug 3: mean x size(0) (= seq_len here) ...
        tokens += n  # ... divided by the non-pad count
        correct += int(hit.sum())
    loss = loss_x_size / max(tokens, 1)
    return {"loss": loss, "perplexity": perplexity(loss_x_size, max(tokens, 1)), "accuracy": correct / max(tokens, 1)}


@torch.no_grad()
def per_row_nll(model, tokenizer, rows: list[str], max_length: int = 64, batch_size: int = 16) -> list[list[float]]:
    """Protocol a, one entry per validation row: [summed NLL, predicted tokens, correct predictions] (for
    intervals over rows; the token-weighted totals equal ``evaluate_text``'s loss and accuracy)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in batches(tokenize_rows(tokenizer, rows, max_length), batch_size, PadCollator(pad)):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        for i in range(ids.size(0)):
            s, c, n = token_nll(logits[i : i + 1], ids[i : i + 1], mask[i : i + 1])
            out.append([float(s), float(n), float(c)])
    model.train(was_training)
    return out
