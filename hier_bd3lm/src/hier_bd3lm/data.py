"""Hierarchical GSM8K records -> fixed-slot tensors ([Q | P | E] or Flat [Q | E]).

Record (README format): {"id", "question", "plan", "execution", "answer_numerical"}. Each segment is
right-padded in its own slot (the fork's loader did not align segments with the mask boundaries):
question slot = [BOS] question [PAD...]; plan and execution slots = content [EOS] [PAD...]. With
`exec_include_answer` the execution is `execution + "\n#### " + answer_numerical` so answers can be scored
with the `####` convention. `loss_mask` (bd3lms' `attention_mask`) is 0 on the question, 1 on content and
terminators, and 1 on PAD filler when `pad_in_loss` (the sampler must learn what follows a segment end, P2);
`content_mask` excludes PAD filler (for the content-token NLL).

python gsm8k_dataloader.py --data_path FILE --analyze
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hier_bd3lm.masks import Layout
from hier_bd3lm.tokenizer import PAD
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
    items: list[tuple[int, object]] = []
    dec = json.JSONDecoder()
    if stripped.startswith("["):
        i = text.index("[") + 1
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


def slot(ids: list[int], length: int, terminator: int | None) -> tuple[list[int], int]:
    """Truncate to fit (keeping the terminator) and right-pad; returns (slot ids, n non-PAD)."""
    if terminator is not None:
        ids = ids[: length - 1] + [terminator]
    ids = ids[:length]
    return ids + [PAD] * (length - len(ids)), len(ids)


@dataclass
class Encoded:
    input_ids: torch.Tensor  # [N, L]
    loss_mask: torch.Tensor  # [N, L]
    content_mask: torch.Tensor  # [N, L]
    segment_ids: torch.Tensor  # [N, L] 0 question, 1 plan, 2 exec
    meta: list[dict]

    def __len__(self):
        return self.input_ids.shape[0]


def encode_records(records: list[dict], tok, layout: Layout, exec_include_answer: bool = True,
                   pad_in_loss: bool = True) -> Encoded:
    ids, lm, cm, seg, meta = [], [], [], [], []
    for rec in records:
        q, _ = slot([tok.bos_id] + tok.encode(str(rec["question"]).strip()), layout.question_len, None)
        row, loss, content, segs = list(q), [0] * len(q), [0] * len(q), [0] * len(q)
        parts = []
        if layout.plan_len:
            parts.append((1, str(rec["plan"]).strip(), layout.plan_len))
        parts.append((2, exec_text(rec, exec_include_answer), layout.exec_len))
        for seg_id, text, n in parts:
            s, used = slot(tok.encode(text), n, tok.eos_id)
            row += s
            content += [1] * used + [0] * (n - used)
            loss += [1] * used + [int(pad_in_loss)] * (n - used)
            segs += [seg_id] * n
        ids.append(row), lm.append(loss), cm.append(content), seg.append(segs)
        meta.append({"id": rec.get("id"), "answer_numerical": str(rec["answer_numerical"]),
                     "question": rec["question"], "plan": rec["plan"]})
    t = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return Encoded(t(ids), t(lm), t(cm), t(seg), meta)


def load_gsm8k_hierarchical(mode: str, layout: Layout, tokenizer, train_path=None, test_path=None,
                            exec_include_answer: bool = True, pad_in_loss: bool = True, limit=None) -> Encoded:
    """The fork's entry point: train -> train_path, test/validation -> test_path."""
    path = train_path if mode == "train" else test_path
    if path is None:
        raise UserError(f"no data path for mode {mode} (set data.train_path / data.test_path)")
    recs = read_records(path)[:limit]
    return encode_records(recs, tokenizer, layout, exec_include_answer, pad_in_loss)


def length_stats(values: list[int]) -> dict:
    t = torch.tensor(values, dtype=torch.float64)
    q = lambda p: float(torch.quantile(t, p))  # noqa: E731
    return {"count": len(values), "mean": float(t.mean()), "median": q(0.5), "min": int(t.min()),
            "max": int(t.max()), "p95": q(0.95), "p99": q(0.99)}


def analyze_lengths(records: list[dict], tok, exec_include_answer: bool = True) -> dict:
    """Token-length statistics per segment and the recommended slots (int(p95) per segment)."""
    segs = {"Question": [len(tok.encode(str(r["question"]))) + 1 for r in records],
            "Plan": [len(tok.encode(str(r["plan"]))) + 1 for r in records],
            "Execution": [len(tok.encode(exec_text(r, exec_include_answer))) + 1 for r in records]}
    stats = {k: length_stats(v) for k, v in segs.items()}
    rec = {k: int(v["p95"]) for k, v in stats.items()}
    rec["Total"] = sum(rec.values())
    return {"stats": stats, "recommended": rec}
