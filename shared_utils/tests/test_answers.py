"""python -m pytest tests/test_answers.py"""

import pytest

from shared_utils.answers import (
    INVALID,
    answers_match,
    calculator_annotations,
    extract_answer,
    extract_last_number,
    normalize_number,
    split_solution,
    strip_calculator_annotations,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("so the loss is #### -15", "-15"),
        ("#### 3.50", "3.5"),
        ("#### $18", "18"),
        ("#### 42.", "42"),
        ("#### -$7.25.", "-7.25"),
        ("first #### 3 then corrected #### 4", "4"),
        ("#### 10.0", "10"),
        ("The answer is 12", INVALID),
        ("#### twelve", INVALID),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_normalize_number():
    assert normalize_number("$1,234.50.") == "1234.5"
    assert normalize_number(" 007 ") == "7"
    assert normalize_number("-0.0") in ("0", "-0")
    assert normalize_number("abc") == INVALID
    assert normalize_number("inf") == INVALID


def test_extract_last_number_falls_back_to_last_number():
    assert extract_last_number("She has 3 apples and buys 4, so 7.") == "7"
    assert extract_last_number("#### 5 and then 9") == "5"
    assert extract_last_number("no digits") == INVALID


def test_answers_match_is_numeric_and_invalid_never_matches():
    assert answers_match("1,000", "1000")
    assert answers_match("5.0", "5")
    assert not answers_match("5.01", "5")
    assert not answers_match(INVALID, INVALID)


def test_calculator_annotations():
    text = "48/2 = <<48/2=24>>24 and 48+24 = <<48+24=72>>72"
    assert strip_calculator_annotations(text) == "48/2 = 24 and 48+24 = 72"
    assert calculator_annotations(text) == ["48/2=24", "48+24=72"]


def test_split_solution():
    reasoning, final = split_solution("step one\nstep two\n#### 72")
    assert reasoning == "step one\nstep two" and final == "72"
    assert split_solution("no marker") == ("no marker", "")
