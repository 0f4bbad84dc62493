"""Data loading shared by the projects: GSM8K and line-level text corpora (WikiText-style).

Every loader takes either a local path (works offline, rows validated with file:line errors) or a Hub
name (refused at once when offline, with the local alternative named).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from shared_utils.errors import UserError
from shared_utils.hub import require_hub

GSM8K_HUB_ID = "openai/gsm8k"
GSM8K_SPLITS = ("train", "test")
WIKITEXT_HUB = ("Salesforce/wikitext", "wikitext-2-raw-v1")


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict]:
    """Read a jsonl file; a malformed row or a missing field is one error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    required = tuple(required)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    yield from read_jsonl(path)


def _gsm8k_file(data_path: Path, split: str) -> Path:
    if data_path.is_file():
        return data_path
    for name in (f"{split}.jsonl", f"gsm8k_{split}.jsonl", f"{split}.json"):
        if (data_path / name).is_file():
            return data_path / name
    raise UserError(f"no GSM8K {split} file in {data_path} (expected {split}.jsonl, as in ../shared/data/gsm8k)")


def load_gsm8k(split: str = "test", data_path: str | Path | None = None, limit: int | None = None) -> list[dict]:
    """GSM8K rows ``{"question", "answer"}`` from a local jsonl (file or dir with ``{split}.jsonl``) or the Hub.

    Args:
        split: "train" or "test".
        data_path: a jsonl file in the official format, or a directory holding ``train.jsonl``/``test.jsonl``.
            ``None`` loads ``openai/gsm8k`` (config "main") from the Hub.
        limit: keep only the first ``limit`` rows.
    """
    if split not in GSM8K_SPLITS:
        raise UserError(f"GSM8K split must be one of {GSM8K_SPLITS}, got '{split}'")
    if data_path is not None:
        path = _gsm8k_file(Path(data_path).expanduser(), split)
        if path.suffix == ".json":
            rows = _read_json_list(path, ("question", "answer"))
        else:
            rows = read_jsonl(path, required=("question", "answer"))
        rows = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    else:
        require_hub(GSM8K_HUB_ID, "dataset", alternative="--data_path DIR with train.jsonl/test.jsonl (../shared/data/gsm8k)")
        from datasets import load_dataset

        ds = load_dataset(GSM8K_HUB_ID, "main", split=split)
        rows = [{"question": r["question"], "answer": r["answer"]} for r in ds]
    return rows[:limit] if limit is not None else rows


def _read_json_list(path: Path, required: tuple[str, ...]) -> list[dict]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON list of objects")
    for i, row in enumerate(rows):
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise UserError(f"{path}: item {i}: missing field(s) {', '.join(missing)}")
    return rows


def load_text_lines(path: str | Path, drop_empty: bool = True) -> list[str]:
    """Lines of a local text file (e.g. WikiText ``wiki.test.raw`` or ``valid.txt``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"text file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [ln for ln in lines if ln.strip()] if drop_empty else lines


def load_text_corpus(source: str = "embedded", split: str = "train", limit: int | None = None) -> list[str]:
    """Text rows from one of three sources.

    Args:
        source: ``"embedded"`` (stdlib docstrings, any machine), a local file / directory path
            (a directory is searched for ``{split}.txt``, ``wiki.{split}.raw``; "validation" also tries
            ``valid.txt``), or ``"wikitext"`` / ``"wikitext-2-raw-v1"`` for Hub WikiText-2 (online only).
        split: "train", "validation" or "test".
        limit: keep the first ``limit`` rows.
    """
    if source == "embedded":
        from shared_utils.corpus import embedded_corpus

        rows = embedded_corpus("validation" if split == "test" else split)
    elif source in ("wikitext", "wikitext-2-raw-v1", "wikitext2"):
        name, config = WIKITEXT_HUB
        require_hub(name, "dataset", alternative="a local text file (../shared/data/wikitext2/raw/wiki.test.raw) or 'embedded'")
        from datasets import load_dataset

        rows = [r["text"] for r in load_dataset(name, config, split=split) if r["text"].strip()]
    else:
        rows = load_text_lines(_text_file(Path(source).expanduser(), split))
    return rows[:limit] if limit is not None else rows


def _text_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        short = {"validation": "valid"}.get(split, split)
        for name in (f"{split}.txt", f"{short}.txt", f"wiki.{split}.raw", f"wiki.{short}.raw", f"raw/wiki.{short}.raw"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"no {split} text file in {path} (tried {split}.txt, {short}.txt, wiki.{short}.raw)")
    raise UserError(f"text source {path} does not exist (use 'embedded', a local file, or 'wikitext' online)")


def split_text_corpus(rows: list[str] | str, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split the rows of a single-file corpus into (train, validation), disjoint and deterministic.

    ``rows`` is a list of rows (documents, paragraphs, lines) or one text, split into its non-empty lines.

    Rows are assigned by a stable hash of (seed, row index, text), so the split does not depend on Python's hash
    seed and identical duplicate rows may fall on either side only by index. At least one row goes to each side
    when there are two or more rows.
    """
    import hashlib

    if isinstance(rows, str):
        rows = [ln for ln in rows.splitlines() if ln.strip()]
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"validation fraction must be in (0, 1), got {val_fraction}")
    if not rows:
        raise UserError("cannot split an empty corpus")
    scored = []
    for i, text in enumerate(rows):
        h = hashlib.sha1(f"{seed}:{i}:{text}".encode("utf-8")).digest()
        scored.append((int.from_bytes(h[:8], "big") / 2**64, i))
    n_val = min(max(1, round(val_fraction * len(rows))), len(rows) - 1) if len(rows) > 1 else 0
    val_idx = {i for _, i in sorted(scored)[:n_val]}
    train = [t for i, t in enumerate(rows) if i not in val_idx]
    val = [t for i, t in enumerate(rows) if i in val_idx]
    return train, val
