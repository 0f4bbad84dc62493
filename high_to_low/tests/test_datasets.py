"""Dataset generators, file formats, tokenizer and answer extraction.

    python -m pytest tests/test_datasets.py -q
"""

import random
import re
from pathlib import Path

import pytest

from high_to_low.evaluate import extract_prediction, is_correct
from high_to_low.reasoning_datasets import (
    INSTRUCTIONS,
    WordTokenizer,
    answer_text,
    arithmetic_example,
    generate,
    is_heldout,
    load_split,
    main,
    parse_qa_lines,
    prompt_text,
    prufer_to_edges,
    write_qa_lines,
)
from shared_utils.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def evaluate_expression(text: str) -> int:
    """Independent evaluator (recursive descent, no eval) for the generator's grammar."""
    toks = re.findall(r"\d+|[-+*()]", text)
    pos = 0

    def atom():
        nonlocal pos
        sign = 1
        while toks[pos] == "-":
            sign, pos = -sign, pos + 1
        if toks[pos] == "(":
            pos += 1
            value = expr()
            assert toks[pos] == ")"
            pos += 1
        else:
            value, pos = int(toks[pos]), pos + 1
        return sign * value

    def term():
        nonlocal pos
        value = atom()
        while pos < len(toks) and toks[pos] == "*":
            pos += 1
            value *= atom()
        return value

    def expr():
        nonlocal pos
        value = term()
        while pos < len(toks) and toks[pos] == "+":
            pos += 1
            value += term()
        return value

    result = expr()
    assert pos == len(toks)
    return result


def test_generators_are_deterministic_per_seed():
    for name in ("parity", "multi-step-arithmetic"):
        assert generate(name, 50, 7, seq_len=20, max_n=8) == generate(name, 50, 7, seq_len=20, max_n=8)
        assert generate(name, 50, 7, seq_len=20, max_n=8) != generate(name, 50, 8, seq_len=20, max_n=8)
    # split seeds as in the original: test 1453, valid 2025, train 42
    assert load_split("parity", "test", num=5, seq_len=9) == generate("parity", 5, 1453, seq_len=9, holdout="eval")
    assert load_split("parity", "valid", num=5, seq_len=9) == generate("parity", 5, 2025, seq_len=9, holdout="eval")
    assert load_split("parity", "train", num=5, seq_len=9) == generate("parity", 5, 42, seq_len=9, holdout="train")


def test_parity_format_and_labels():
    items = generate("parity", 300, 0, seq_len=12, min_len=3)
    for it in items:
        assert re.fullmatch(r"([01] ){3,12}", it["input"])
        assert it["output"] == str(it["input"].count("1") % 2)
        assert it["instruction"] == "Output the parity of this sequence."
    assert {len(it["input"]) // 2 for it in items} == set(range(3, 13))


def test_arithmetic_labels_checked_by_independent_evaluator():
    items = generate("multi-step-arithmetic", 400, 3, max_n=8)
    for it in items:
        assert it["input"].endswith(" = ")
        assert it["output"] == str(evaluate_expression(it["input"][:-3]) % 10)
    assert any("(" in it["input"] for it in items) and any(it["input"].startswith("-") for it in items)
    assert evaluate_expression("(4 + -9)") % 10 == 5
    assert evaluate_expression("-(5 * 4 * (3 * -5))") % 10 == 0


def test_arithmetic_tree_size_matches_node_count():
    rng = random.Random(5)
    for _ in range(100):
        it = arithmetic_example(rng, max_n=7, min_n=7)
        assert len(re.findall(r"\d", it["input"])) == 7  # one single-digit value per node


def _root(parent, x):
    while parent[x] != x:
        x = parent[x]
    return x


def test_prufer_decode_gives_a_tree():
    rng = random.Random(0)
    for n in range(2, 12):
        edges = prufer_to_edges([rng.randrange(n) for _ in range(n - 2)], n)
        assert len(edges) == n - 1
        parent = list(range(n))
        for a, b in edges:
            assert _root(parent, a) != _root(parent, b)  # no cycle
            parent[_root(parent, a)] = _root(parent, b)
        assert len({_root(parent, i) for i in range(n)}) == 1  # connected
    assert prufer_to_edges([3, 3, 3, 4], 6) == [(0, 3), (1, 3), (2, 3), (3, 4), (4, 5)]


def test_gsm8k_txt_parser_and_errors(tmp_path):
    items = parse_qa_lines(FIXTURES / "gsm8k_test.txt")
    assert [it["output"] for it in items] == ["18", "3", "70000"]
    assert items[0]["input"].startswith("Janet’s ducks") and "||" not in items[0]["input"]
    assert items[0]["instruction"] == "Answer the math question."
    bad = tmp_path / "test.txt"
    bad.write_text("a||#### 1\n\nno separator here\n")
    with pytest.raises(UserError, match=r"test.txt:3"):
        parse_qa_lines(bad)


def test_gsm8k_from_official_jsonl():
    test = load_split("gsm8k", "test", FIXTURES / "gsm8k")
    assert [it["output"] for it in test] == ["18", "3", "70000"]
    assert len(load_split("gsm8k", "train", FIXTURES / "gsm8k")) == 0  # 4 rows, the last 500 are valid
    assert len(load_split("gsm8k", "valid", FIXTURES / "gsm8k")) == 4
    with pytest.raises(UserError, match="needs --data_dir"):
        load_split("gsm8k", "test")
    with pytest.raises(UserError, match="unknown --dataset_name"):
        load_split("sudoku", "test")


def test_written_files_round_trip(tmp_path):
    main(["--dataset_name", "parity", "--out_dir", str(tmp_path), "--num_train", "20", "--num_eval", "5",
          "--seq_len", "6"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    assert load_split("parity", "train", tmp_path) == generate("parity", 20, 42, seq_len=6, holdout="train")
    assert load_split("parity", "test", tmp_path) == generate("parity", 5, 1453, seq_len=6, holdout="eval")
    items = generate("multi-step-arithmetic", 20, 1, max_n=6)
    write_qa_lines(tmp_path / "a" / "test.txt", items)
    assert parse_qa_lines(tmp_path / "a" / "test.txt", INSTRUCTIONS["multi-step-arithmetic"]) == items


def test_word_tokenizer_round_trip_and_lengths():
    tok = WordTokenizer()
    for it in generate("parity", 20, 0, seq_len=10) + generate("multi-step-arithmetic", 20, 0, max_n=6):
        text = prompt_text(it) + answer_text(it)
        ids = tok.encode(text)
        assert tok.decode(ids) == text and tok.unk_token_id not in ids
        if it["instruction"].startswith("Output the parity"):
            assert len(ids) == 17 + len(it["input"]) // 2  # one token per bit (spec 8.2)
    assert tok.encode("zebra")[0] == tok.unk_token_id


@pytest.mark.parametrize("generated, gold, dataset, ok", [
    (": 1", "1", "parity", True),
    (": 0", "1", "parity", False),
    (": 7 0 1", "7", "multi-step-arithmetic", True),
    (":18\nQuestion", "18", "gsm8k", True),
    (": 1,234", "1234", "gsm8k", True),
    (": 70000.00", "70000", "gsm8k", True),
    (": 12", "1", "parity", False),
    (" 1", "1", "parity", False),
    ("", "1", "parity", False),
])
def test_answer_extraction(generated, gold, dataset, ok):
    assert is_correct(dataset, generated, gold) is ok
    assert extract_prediction(": 5\n: 6") == "5"


@pytest.mark.parametrize("name,gen", [("parity", {"seq_len": 16}), ("multi-step-arithmetic", {"max_n": 6})])
def test_generated_test_sets_share_no_prompt_with_training(name, gen):
    """The table's scale: 2,000 training items of two seeds vs the test set (and unfiltered, they would overlap)."""
    train = {it["input"] for seed in (0, 1) for it in load_split(name, "train", num=2000, seed=seed, **gen)}
    test = load_split(name, "test", num=500, **gen)
    assert all(is_heldout(it) for it in test) and not any(is_heldout({"input": p}) for p in train)
    assert sum(it["input"] in train for it in test) == 0
    raw = generate(name, 500, 1453, **gen)
    assert sum(it["input"] in train for it in raw) > 25  # the original's generator does overlap


def test_holdout_refuses_a_too_small_space():
    with pytest.raises(UserError, match="too small"):
        generate("parity", 5, 0, seq_len=1, holdout="eval")  # neither "0 " nor "1 " is in the held-out class


def test_held_out_parity_labels_are_balanced_per_length():
    """The held-out class must not fix the label (a linear hash such as crc32 did: only 0 at lengths 3..5)."""
    from collections import Counter

    test = load_split("parity", "test", num=3000, seq_len=12)
    by_len = {}
    for it in test:
        by_len.setdefault(len(it["input"].split()), Counter())[it["output"]] += 1
    for n, c in by_len.items():
        if n >= 5 and sum(c.values()) >= 60:
            assert 0.25 < c["1"] / sum(c.values()) < 0.75, (n, c)
