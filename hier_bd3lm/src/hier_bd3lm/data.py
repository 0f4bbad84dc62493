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

from dataclasses import dataclass

import torch

from hier_bd3lm.masks import Layout
from hier_bd3lm.records import REQUIRED, exec_text, read_records  # noqa: F401  (re-exported)
from hier_bd3lm.tokenizer import PAD
from shared_utils.errors import UserError


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


def truncation_and_ceiling(records: list[dict], tok, layout: Layout, exec_include_answer: bool = True) -> dict:
    """Truncation rates per slot and the gold-through-the-pipeline ceiling.

    The ceiling is the exact-answer accuracy of the *gold* execution after it has been encoded into its slot
    (truncated there when too long) and decoded again: no model can score higher with this layout and
    tokenizer. `correct` is the per-example list (for intervals).
    """
    from shared_utils.answers import answers_match, extract_answer

    n_q = n_p = n_e = 0
    correct = []
    for rec in records:
        q_ids = [tok.bos_id] + tok.encode(str(rec["question"]).strip())
        n_q += len(q_ids) > layout.question_len
        if layout.plan_len:
            n_p += len(tok.encode(str(rec["plan"]).strip())) + 1 > layout.plan_len
        e_ids = tok.encode(exec_text(rec, exec_include_answer))
        n_e += len(e_ids) + 1 > layout.exec_len
        s, _ = slot(e_ids, layout.exec_len, tok.eos_id)
        correct.append(answers_match(extract_answer(tok.decode(s)), str(rec["answer_numerical"])))
    n = max(1, len(records))
    return {"n": len(records), "truncated_question": n_q / n, "truncated_plan": n_p / n if layout.plan_len else None,
            "truncated_exec": n_e / n, "ceiling": sum(correct) / n, "correct": correct}
