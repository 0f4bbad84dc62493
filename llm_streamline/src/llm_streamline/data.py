"""Training / calibration data: text sources, the original's domain-weighted SlimPajama sampler, token blocks.

Original pipeline (spec 2.5): SlimPajama-6B documents sampled per RedPajama domain with fixed weights, each
document tokenised with the model tokenizer, documents concatenated within ``map`` batches of 1000 and cut into
2048-token blocks (remainder dropped), ``labels = input_ids``. Here the same grouping runs on any text source
(``--data_path``): the Hub dataset online, a local text file (e.g. WikiText-2 from ../shared/data) or the
embedded stdlib-docstring corpus offline; every random choice is seeded (the original seeded nothing).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import torch

from shared_utils.data import load_text_corpus
from shared_utils.errors import UserError
from shared_utils.hub import require_hub

SLIMPAJAMA = "DKYoon/SlimPajama-6B"
# commit 70fdcaa of the original: CC / 3, ArXiv / 20, Book / 200 "because documents are longer"
DOMAIN_WEIGHTS = {
    "RedPajamaC4": 0.492, "RedPajamaStackExchange": 0.01, "RedPajamaCommonCrawl": 0.361 / 3,
    "RedPajamaGithub": 0.008, "RedPajamaWikipedia": 0.031, "RedPajamaArXiv": 0.007 / 20, "RedPajamaBook": 0.091 / 200,
}
TEST_DOCS = 3000


def domain_counts(train_num_data: int, weights: dict[str, float] = DOMAIN_WEIGHTS, test_docs: int = TEST_DOCS) -> dict:
    """Per-domain (train, test) document counts: int(N * p) and int(3000 * p), as the original computes them."""
    return {name: (int(train_num_data * p), int(test_docs * p)) for name, p in weights.items()}


def sample_domains(rows: list[dict], train_num_data: int, seed: int = 0, weights: dict[str, float] = DOMAIN_WEIGHTS,
                   test_docs: int = TEST_DOCS) -> tuple[list[str], list[str]]:
    """Split documents ``{"text", "meta": {"redpajama_set_name"}}`` into domain-weighted (train, test) text lists."""
    by_domain: dict[str, list[str]] = {}
    for row in rows:
        by_domain.setdefault(row["meta"]["redpajama_set_name"], []).append(row["text"])
    rng = random.Random(seed)
    train, test = [], []
    for name, (n_train, n_test) in domain_counts(train_num_data, weights, test_docs).items():
        docs = list(by_domain.get(name, []))
        rng.shuffle(docs)
        test.extend(docs[:n_test])
        train.extend(docs[n_test : n_test + n_train])
    return train, test


def wikitext_detokenize(text: str) -> str:
    """Undo the tokenised WikiText format (`` @-@ ``, `` , ``, `` 's``) so it reads like the raw text."""
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" , ", ", "), (" . ", ". "), (" ; ", "; "),
                 (" : ", ": "), (" 's", "'s"), (" n't", "n't"), ("( ", "("), (" )", ")"), (" '", "'")):
        text = text.replace(a, b)
    return re.sub(r" ([.!?,])", r"\1", text)


def load_texts(data_path: str | None, split: str = "train", train_num_data: int = 100000, seed: int = 0) -> list[str]:
    """Documents from ``data_path``: SlimPajama (Hub), ``embedded``, or a local text file / directory."""
    if data_path in (None, "", SLIMPAJAMA):
        require_hub(SLIMPAJAMA, "dataset", alternative="--data_path embedded or a local text file (../shared/data/wikitext2/...)")
        from datasets import load_dataset

        rows = load_dataset(SLIMPAJAMA, split="train")
        train, test = sample_domains(rows, train_num_data, seed)
        return train if split == "train" else test
    if data_path != "embedded" and not Path(data_path).expanduser().exists():
        raise UserError(f"data file {data_path} does not exist (use --data_path embedded, or a local text file)")
    texts = load_text_corpus(data_path, split="train" if data_path != "embedded" else split)
    if any(" @-@ " in t or " @,@ " in t for t in texts[:200]):
        texts = [wikitext_detokenize(t) for t in texts]
    return [t for t in texts if not t.strip().startswith("= ")]  # WikiText headings carry no running text


def group_texts(texts: list[str], tokenizer, seq_len: int, docs_per_group: int = 1000) -> torch.Tensor:
    """Tokenise, concatenate within groups of ``docs_per_group`` documents, cut into [N, seq_len] blocks.

    The remainder of every group is dropped (the original's ``group_texts`` inside ``datasets.map``).
    """
    if seq_len < 2:
        raise UserError(f"seq_len must be at least 2, got {seq_len}")
    blocks = []
    for start in range(0, len(texts), docs_per_group):
        ids: list[int] = []
        for enc in tokenizer(texts[start : start + docs_per_group])["input_ids"]:
            ids.extend(enc)
        usable = len(ids) // seq_len * seq_len
        if usable:
            blocks.append(torch.tensor(ids[:usable], dtype=torch.long).view(-1, seq_len))
    if not blocks:
        raise UserError(f"the text is shorter than one block of {seq_len} tokens")
    return torch.cat(blocks)


def split_blocks(blocks: torch.Tensor, n_test: int, n_train: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded shuffle, then (train, test) blocks; asks for more than exists -> one clear error."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(blocks), generator=gen)
    need = n_test + (n_train or 0)
    if need > len(blocks):
        raise UserError(f"the data has {len(blocks)} blocks but {need} were asked for (train {n_train}, test {n_test}); "
                        "lower --train_num_data/--num_test_blocks or --seq_len, or give more text")
    test = blocks[perm[:n_test]]
    train = blocks[perm[n_test : n_test + n_train]] if n_train else blocks[perm[n_test:]]
    return train, test


def sample_blocks(blocks: torch.Tensor, num: int, seed: int) -> torch.Tensor:
    """``num`` blocks drawn without replacement (the original's unseeded ``randperm``, seeded here)."""
    if num > len(blocks):
        raise UserError(f"cosine_num_data={num} but only {len(blocks)} training blocks exist")
    gen = torch.Generator().manual_seed(seed + 1)
    return blocks[torch.randperm(len(blocks), generator=gen)[:num]]


def batches(blocks: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0, pad_id: int | None = None):
    """List of ``{"input_ids", "attention_mask", "labels"}`` batches; labels mask nothing (blocks are full)."""
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(len(blocks))
    out = []
    for i in range(0, len(blocks), batch_size):
        ids = blocks[order[i : i + batch_size]]
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return out
