"""Data pipeline: grouping into blocks, remainder drop, domain-weighted sampling.  python -m pytest tests/test_data.py -q"""

import pytest
import torch
from helpers import byte_tokenizer

from llm_streamline.data import (
    DOMAIN_WEIGHTS,
    batches,
    domain_counts,
    group_texts,
    sample_domains,
    split_blocks,
    wikitext_detokenize,
)
from shared_utils.errors import UserError


def test_group_texts_concatenates_within_groups_and_drops_remainder():
    tok = byte_tokenizer()
    texts = ["abcde", "fgh", "ijklmnop"]  # 5 + 3 + 8 = 16 bytes
    blocks = group_texts(texts, tok, 6, docs_per_group=1000)
    assert blocks.shape == (2, 6)
    assert tok.decode(blocks.flatten().tolist()) == "abcdefghijkl"
    # groups of 2 docs: "abcdefgh" -> 1 block (remainder "gh" dropped), "ijklmnop" -> 1 block
    blocks = group_texts(texts, tok, 6, docs_per_group=2)
    assert [tok.decode(b.tolist()) for b in blocks] == ["abcdef", "ijklmn"]


def test_too_short_text_is_user_error():
    with pytest.raises(UserError, match="shorter than one block"):
        group_texts(["ab"], byte_tokenizer(), 8)


def test_domain_counts_follow_weights():
    counts = domain_counts(100000)
    assert counts["RedPajamaC4"] == (49200, 1476)
    assert counts["RedPajamaBook"] == (45, 1)
    assert sum(t for t, _ in counts.values()) == pytest.approx(100000 * sum(DOMAIN_WEIGHTS.values()), abs=10)


def test_sample_domains_on_synthetic_meta_is_seeded_and_disjoint():
    rows = [{"text": f"{d}-{i}", "meta": {"redpajama_set_name": d}} for d in DOMAIN_WEIGHTS for i in range(300)]
    w = {"RedPajamaC4": 0.5, "RedPajamaGithub": 0.1}
    train, test = sample_domains(rows, 400, seed=1, weights=w, test_docs=100)
    assert sum(t.startswith("RedPajamaC4") for t in train) == 200 and len(test) == 60
    assert not set(train) & set(test)
    assert sample_domains(rows, 400, seed=1, weights=w, test_docs=100) == (train, test)


def test_split_and_batches():
    blocks = torch.arange(40).view(10, 4)
    train, test = split_blocks(blocks, 3, 5, seed=0)
    assert len(train) == 5 and len(test) == 3
    assert not set(train[:, 0].tolist()) & set(test[:, 0].tolist())
    with pytest.raises(UserError, match="10 blocks"):
        split_blocks(blocks, 6, 5, seed=0)
    b = batches(train, 2)
    assert [x["input_ids"].shape[0] for x in b] == [2, 2, 1] and torch.equal(b[0]["labels"], b[0]["input_ids"])


def test_wikitext_detokenize():
    assert wikitext_detokenize("a 3 @,@ 000 @-@ strong team , he 's here .") == "a 3,000-strong team, he's here."
