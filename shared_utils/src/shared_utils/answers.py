"""GSM8K-style answers: extraction, normalisation, calculator annotations.

The reference format (openai/grade-school-math) ends a solution with ``#### <number>``; the official
checker returns ``[invalid]`` when no such line exists. Numbers are compared after normalisation:
``$1,234.50.`` -> ``1234.5``; ``-3`` stays negative; ``7.0`` -> ``7``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

INVALID = "[invalid]"

_NUMBER = r"-?\$?\s*-?[\d,]*\.?\d+"
_HASH_RE = re.compile(r"####\s*(" + _NUMBER + r")")
_NUM_RE = re.compile(_NUMBER)
_CALC_RE = re.compile(r"<<[^<>]*>>")


def normalize_number(text: str) -> str:
    """Canonical string for a number: no ``$``, commas, spaces or trailing period; ``7.50`` -> ``7.5``.

    Returns INVALID when ``text`` is not a number.
    """
    s = str(text).strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    if s.startswith("--"):
        s = s[2:]
    try:
        value = Decimal(s)
    except InvalidOperation:
        return INVALID
    if not value.is_finite():
        return INVALID
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def extract_answer(text: str) -> str:
    """The normalised number after the last ``####`` marker, or INVALID."""
    matches = _HASH_RE.findall(str(text))
    if not matches:
        return INVALID
    return normalize_number(matches[-1])


def extract_last_number(text: str) -> str:
    """Flexible extraction: the ``####`` answer if present, else the last number in the text, else INVALID."""
    marked = extract_answer(text)
    if marked != INVALID:
        return marked
    nums = _NUM_RE.findall(str(text))
    return normalize_number(nums[-1]) if nums else INVALID


def answers_match(pred: str, gold: str) -> bool:
    """Numeric equality after normalisation; INVALID never matches."""
    p, g = normalize_number(pred), normalize_number(gold)
    return p != INVALID and p == g


def strip_calculator_annotations(text: str) -> str:
    """Remove GSM8K calculator annotations: ``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``."""
    return _CALC_RE.sub("", str(text))


def calculator_annotations(text: str) -> list[str]:
    """The expressions inside ``<<...>>`` annotations, e.g. ``['48/2=24', '48+24=72']``."""
    return [m[2:-2] for m in _CALC_RE.findall(str(text))]


def split_solution(answer_field: str) -> tuple[str, str]:
    """Split a GSM8K answer field into (reasoning text, final answer string as written after ####)."""
    text = str(answer_field)
    idx = text.rfind("####")
    if idx < 0:
        return text.strip(), ""
    return text[:idx].strip(), text[idx + 4 :].strip()
