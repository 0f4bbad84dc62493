"""Records, slot alignment, PAD != MASK, answer extraction, the rule plan writer.

python -m pytest tests/test_data.py -q
"""

import json
import re

import pytest
from conftest import FIXTURES

from hier_bd3lm.data import encode_records, exec_text, read_records
from hier_bd3lm.masks import Layout
from hier_bd3lm.plans import FALLBACK_PLAN, clean_plan, main_operator, rule_plan
from hier_bd3lm.tokenizer import BOS, EOS, PAD, CharTokenizer
from shared_utils.answers import INVALID, extract_answer, extract_last_number
from shared_utils.errors import UserError

RECS = read_records(FIXTURES / "hier_gsm8k_train.json")


def char_tok():
    return CharTokenizer.fit(t for r in RECS for t in (r["question"], r["plan"], exec_text(r)))


def test_fixture_records_have_readme_keys():
    assert len(RECS) == 12 and RECS[0]["id"] == "gsm8k_train_0"
    assert set(RECS[0]) == {"id", "question", "plan", "execution", "answer_numerical"}
    assert RECS[0]["answer_numerical"] == "72" and "####" not in RECS[0]["execution"]


def test_pad_and_mask_are_distinct():
    tok = char_tok()
    assert len({tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id}) == 4 and tok.mask_id == tok.vocab_size - 1


def test_slots_are_aligned_with_segments():
    tok = char_tok()
    lay = Layout(64, 96, 160, 16)
    enc = encode_records(RECS[:3], tok, lay)
    assert enc.input_ids.shape == (3, 320)
    q, P = 64, 96
    for i, r in enumerate(RECS[:3]):
        ids, lm, cm = enc.input_ids[i].tolist(), enc.loss_mask[i].tolist(), enc.content_mask[i].tolist()
        assert ids[0] == BOS and sum(lm[:q]) == 0
        plan = tok.encode(r["plan"])[: P - 1]
        assert ids[q:q + len(plan)] == plan and ids[q + len(plan)] == EOS
        assert set(ids[q + len(plan) + 1:q + P]) <= {PAD}
        ex = tok.encode(exec_text(r))[: 160 - 1]
        assert ids[q + P:q + P + len(ex)] == ex and ids[q + P + len(ex)] == EOS
        assert sum(cm[q:q + P]) == len(plan) + 1 and sum(lm[q:]) == P + 160  # PAD filler carries loss
        assert enc.segment_ids[i].tolist() == [0] * q + [1] * P + [2] * 160
    assert tok.decode(enc.input_ids[0, q + P:]).endswith("#### 72")


def test_truncation_keeps_terminator_and_pad_in_loss_switch():
    tok = char_tok()
    lay = Layout(8, 16, 16, 8)
    enc = encode_records(RECS[:1], tok, lay, pad_in_loss=False)
    ids = enc.input_ids[0].tolist()
    assert ids[8 + 15] == EOS and ids[8 + 16 + 15] == EOS and PAD not in ids[8:]
    assert enc.loss_mask[0].tolist() == enc.content_mask[0].tolist()


def test_flat_layout_drops_the_plan():
    tok = char_tok()
    enc = encode_records(RECS[:2], tok, Layout(32, 0, 64, 16))
    assert enc.input_ids.shape == (2, 96) and set(enc.segment_ids[0].tolist()) == {0, 2}


def test_malformed_records_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"question": "q", "plan": "p", "execution": "e", "answer_numerical": "1"},\n'
                   '  {"question": "q", "plan": "p"}\n]\n')
    with pytest.raises(UserError, match=r"bad.json:3: .*missing field\(s\) execution, answer_numerical"):
        read_records(bad)
    bad.write_text('[\n  {"question": "q",\n  "plan": }\n]')
    with pytest.raises(UserError, match=r"bad.json:3: malformed JSON"):
        read_records(bad)
    jl = tmp_path / "bad.jsonl"
    jl.write_text(json.dumps(RECS[0]) + "\n[1, 2]\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: expected a JSON object"):
        read_records(jl)
    with pytest.raises(UserError, match="does not exist"):
        read_records(tmp_path / "missing.json")


@pytest.mark.parametrize("text,strict,flex", [
    ("so 3 + 4 = 7\n#### 1,234", "1234", "1234"), ("#### -5", "-5", "-5"), ("#### 2.50", "2.5", "2.5"),
    ("#### $18.", "18", "18"), ("the answer is 42", INVALID, "42"), ("no number", INVALID, INVALID)])
def test_answer_extraction(text, strict, flex):
    assert extract_answer(text) == strict and extract_last_number(text) == flex


def test_rule_plans_have_no_digits_and_follow_operators():
    assert main_operator("48/2=24") == "/" and main_operator("3*4+2=14") == "+" and main_operator("(5-2)*3=9") == "*"
    assert main_operator("-3*2=-6") == "*"
    for r in RECS:
        assert not re.search(r"\d", r["plan"]) and r["plan"].endswith("State the final result.")
    assert rule_plan("no annotations here") == FALLBACK_PLAN
    assert rule_plan("<<48/2=24>> and <<48+24=72>>").startswith("First, divide")


def test_clean_plan():
    assert clean_plan("Here is the plan:\n\"Add them.\nThen subtract.\"") == "Add them. Then subtract."
    assert clean_plan("Plan: ") == FALLBACK_PLAN
