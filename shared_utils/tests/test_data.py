"""python -m pytest tests/test_data.py"""

import json
import time

import pytest

from shared_utils.corpus import embedded_corpus
from shared_utils.data import load_gsm8k, load_text_corpus, read_jsonl
from shared_utils.errors import OfflineError, UserError

ROWS = [
    {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many altogether?",
     "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"},
    {"question": "Weng earns $12 an hour. She did 50 minutes of babysitting. How much did she earn?",
     "answer": "Per minute 12/60 = $<<12/60=0.2>>0.2.\n50 minutes: 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_gsm8k_from_dir_and_file(tmp_path):
    write_jsonl(tmp_path / "test.jsonl", ROWS)
    write_jsonl(tmp_path / "train.jsonl", ROWS[:1])
    assert load_gsm8k("test", tmp_path) == ROWS
    assert load_gsm8k("train", tmp_path) == ROWS[:1]
    assert load_gsm8k("test", tmp_path / "test.jsonl", limit=1) == ROWS[:1]


def test_load_gsm8k_rejects_bad_split_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="split"):
        load_gsm8k("dev", tmp_path)
    with pytest.raises(UserError, match="no GSM8K test file"):
        load_gsm8k("test", tmp_path)


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{not json}\n")
    with pytest.raises(UserError, match=r"test\.jsonl:3: malformed JSON"):
        load_gsm8k("test", path)
    path.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(UserError, match=r"test\.jsonl:1: missing field\(s\) answer"):
        read_jsonl(path, required=("question", "answer"))


def test_hub_dataset_refused_at_once_offline(offline):
    t0 = time.time()
    with pytest.raises(OfflineError, match="--data_path"):
        load_gsm8k("test")
    with pytest.raises(OfflineError, match="local text file"):
        load_text_corpus("wikitext", "test")
    assert time.time() - t0 < 2


def test_text_corpus_from_file_and_dir(tmp_path):
    (tmp_path / "valid.txt").write_text(" = Title = \n\nSome text here .\n \nMore text .\n")
    assert load_text_corpus(str(tmp_path / "valid.txt")) == [" = Title = ", "Some text here .", "More text ."]
    assert load_text_corpus(str(tmp_path), "validation", limit=2) == [" = Title = ", "Some text here ."]
    with pytest.raises(UserError, match="no test text file"):
        load_text_corpus(str(tmp_path), "test")
    with pytest.raises(UserError, match="does not exist"):
        load_text_corpus(str(tmp_path / "nope.txt"))


def test_embedded_corpus_is_prose_deterministic_and_split():
    train, valid = embedded_corpus("train"), embedded_corpus("validation")
    assert len(train) > 2000 and len(valid) > 200
    assert not set(train) & set(valid)
    assert embedded_corpus("train")[:50] == train[:50]
    words = sum(len(p.split()) for p in train)
    assert words > 100_000
    assert all(len(p.split()) >= 8 for p in train[:500])
    assert load_text_corpus("embedded", "test")[:5] == valid[:5]
    with pytest.raises(UserError):
        embedded_corpus("dev")


def test_split_text_corpus_disjoint_deterministic():
    from shared_utils.data import split_text_corpus

    rows = [f"row {i}" for i in range(100)]
    tr, va = split_text_corpus(rows, 0.2, seed=1)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va) and sorted(tr + va) == sorted(rows)
    assert split_text_corpus(rows, 0.2, seed=1) == (tr, va) and split_text_corpus(rows, 0.2, seed=2) != (tr, va)
    assert [r for r in rows if r in set(tr)] == tr  # order kept
    tr2, va2 = split_text_corpus("a\n\nb\nc\n", 0.5)
    assert sorted(tr2 + va2) == ["a", "b", "c"] and len(va2) >= 1
    with pytest.raises(UserError):
        split_text_corpus([], 0.1)
    with pytest.raises(UserError):
        split_text_corpus(rows, 1.5)
