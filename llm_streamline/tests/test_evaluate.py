"""Perplexity and lm-eval with per-sample logs (tiny model, a 3-question fixture written for these tests).

    python -m pytest tests/test_evaluate.py -q
"""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import byte_tokenizer, tiny_model

from llm_streamline.evaluate import lm_eval_samples, perplexity
from llm_streamline.stability import directory_stability

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"


@torch.no_grad()
def test_perplexity_is_exp_of_hf_mean_loss():
    model = tiny_model(2)
    blocks = torch.randint(0, 256, (3, 12))
    loss = model(input_ids=blocks, labels=blocks).loss  # mean over all 3 x 11 predicted tokens
    assert perplexity(model, blocks, batch_size=2) == pytest.approx(math.exp(loss.item()), rel=1e-4)


def test_lm_eval_samples_are_consistent_and_feed_stability(tmp_path):
    model, tok = tiny_model(2), byte_tokenizer()
    res = lm_eval_samples(model, tok, ["arc_easy"], tmp_path / "a", data_dir=str(FIXTURES), batch_size=2)
    rows = [json.loads(x) for x in (tmp_path / "a" / "samples_arc_easy.jsonl").read_text().splitlines()]
    assert res["arc_easy"]["n"] == 3 == len(rows)
    assert [len(r["filtered_resps"]) for r in sorted(rows, key=lambda r: r["doc_id"])] == [3, 2, 4]
    for r in rows:
        ll = [x[0] for x in r["filtered_resps"]]
        assert r["acc"] == float(max(range(len(ll)), key=ll.__getitem__) == r["target"])
    assert res["arc_easy"]["acc"] == sum(r["acc"] for r in rows) / 3
    # the same model twice is perfectly stable
    lm_eval_samples(model, tok, ["arc_easy"], tmp_path / "b", data_dir=str(FIXTURES), batch_size=2)
    assert directory_stability(tmp_path / "a", tmp_path / "b")["arc_easy"] == 1.0
