"""Text rows -> token rows -> padded [batch, time] batches with pad positions masked out of the labels.

Sources (``dataset_name``): ``embedded`` (English paragraphs from the Python stdlib docstrings, any machine), a local
text file or directory (e.g. ``../../shared/data/wikitext2/raw/wiki.test.raw``), or a Hub dataset (``wikitext`` with
``dataset_config: wikitext-2-raw-v1``; refused at once offline). A single local file has no split, so its first
``num_eval_samples`` non-empty lines are the validation rows and the rest are the training rows (no overlap).

Rows with fewer than 2 tokens are dropped (the original padded empty wikitext rows to 512 pads: all-pad batches
give a NaN loss). Batches are padded to the longest row (dynamic padding), labels are -100 wherever
attention_mask is 0 (mask by attention, not pad id: SmolLM2's pad id equals its eos id).
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.data import load_text_corpus, load_text_lines
from shared_utils.errors import UserError
from shared_utils.hub import require_hub
from shared_utils.metrics import IGNORE_INDEX


def load_text_rows(dataset_name: str, split: str, dataset_config: str | None = None, num_eval: int = 1000) -> list[str]:
    """Non-empty text rows of ``split`` ("train" or "validation")."""
    if dataset_name == "embedded":
        return load_text_corpus("embedded", split)
    path = Path(dataset_name).expanduser()
    if path.is_file():
        rows = load_text_lines(path)
        if len(rows) <= num_eval:
            raise UserError(f"{path}: {len(rows)} non-empty lines, need more than num_eval_samples={num_eval} "
                            "(the first num_eval_samples lines are held out for validation)")
        return rows[:num_eval] if split == "validation" else rows[num_eval:]
    if path.is_dir() or dataset_name.startswith((".", "/", "~")):
        return load_text_corpus(str(path), split)
    require_hub(dataset_name, "dataset", alternative="--dataset_name embedded or a local text file "
                "(../../shared/data/wikitext2/raw/wiki.test.raw)")
    from datasets import load_dataset

    ds = load_dataset(dataset_name, dataset_config, split=split)
    return [r["text"] for r in ds if r["text"].strip()]


def tokenize_rows(tokenizer, rows: list[str], max_length: int, limit: int | None = None) -> list[dict]:
    """[{"input_ids": [...]}] truncated to ``max_length``; rows with < 2 tokens are dropped."""
    out = []
    for text in rows:
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        if len(ids) >= 2:
            out.append({"input_ids": list(ids)})
        if limit is not None and len(out) >= limit:
            break
    return out


def shuffled(rows: list, seed: int) -> list:
    """One seeded permutation, shared by the Trainer path and the manual loop (both then read sequentially)."""
    g = torch.Generator().manual_seed(int(seed))
    return [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]


class PadCollator:
    """Right-pad ``input_ids`` to the longest row; labels = input_ids with padding set to -100."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: list[dict]) -> dict:
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            row = torch.as_tensor(f["input_ids"], dtype=torch.long)
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(rows: list[dict], batch_size: int, collator) -> list[dict]:
    return [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def stream_blocks(tokenizer, rows: list[str], block: int, limit_blocks: int | None = None) -> list[dict]:
    """Protocol b: concatenate the text, cut contiguous ``block``-token windows (no padding)."""
    ids: list[int] = []
    for text in rows:
        ids += tokenizer(text + "\n")["input_ids"]
    blocks = [{"input_ids": ids[i : i + block]} for i in range(0, len(ids) - block + 1, block)]
    return blocks[:limit_blocks] if limit_blocks is not None else blocks
