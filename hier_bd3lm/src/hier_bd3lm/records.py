"""Reading README-format hierarchical records (JSON list or JSONL); torch-free, errors name file:line."""

from __future__ import annotations

import json
from pathlib import Path

from shared_utils.errors import UserError

REQUIRED = ("question", "plan", "execution", "answer_numerical")


def _line_of(text: str, idx: int) -> int:
    return text.count("\n", 0, idx) + 1


def read_records(path: str | Path, required=REQUIRED) -> list[dict]:
    """JSON list (README format) or JSONL; a bad record is one error naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):  # fast path; the slow path below only runs to name the line of a problem
        try:
            fast = json.loads(text)
            if (isinstance(fast, list) and fast and all(isinstance(o, dict) for o in fast)
                    and all(k in o and isinstance(o[k], (str, int, float)) for o in fast for k in required)):
                return fast
        except json.JSONDecodeError:
            pass
    items: list[tuple[int, object]] = []
    dec = json.JSONDecoder()
    if stripped.startswith("["):
        i = text.index("[") + 1
        line, line_pos = 1, 0  # line number of offset line_pos; advanced incrementally (counting from 0 each
        # time made reading a 20,000-record file quadratic)

        def _line_of(_text, idx):
            nonlocal line, line_pos
            line += text.count("\n", line_pos, idx)
            line_pos = idx
            return line

        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text):
                raise UserError(f"{path}:{_line_of(text, i)}: unterminated JSON list")
            if text[i] == "]":
                break
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{_line_of(text, exc.pos)}: malformed JSON ({exc.msg})") from None
            items.append((_line_of(text, i), obj))
            i = end
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
    rows = []
    for lineno, obj in items:
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise UserError(f"{path}:{lineno}: record is missing field(s) {', '.join(missing)}")
        bad = [k for k in required if not isinstance(obj[k], (str, int, float))]
        if bad:
            raise UserError(f"{path}:{lineno}: field(s) {', '.join(bad)} must be strings")
        rows.append(obj)
    if not rows:
        raise UserError(f"{path}: no records")
    return rows


def exec_text(rec: dict, include_answer: bool = True) -> str:
    ex = str(rec["execution"]).strip()
    return f"{ex}\n#### {rec['answer_numerical']}" if include_answer else ex
