"""Evaluation: NELBO / NLL per token (bounds for BD3-LM, exact for AR), per segment, and sampling accuracy.

- `evaluate_nll`: the unbiased NELBO with t ~ U[1e-3, 1] (the clipped training interval is never used for
  reporting), averaged over `mc_samples` time draws; sums per loss token, per content token (PAD filler
  excluded), per plan / exec content token. For Hier the exec term is conditioned on the gold question and
  plan (teacher-forced), for Flat on the question only.
- `sample_eval`: question-only prefixes -> sampled [P | E] -> `####` answer (strict) and last number (flexible),
  invalid extractions counted, seconds per sample and NFEs, numbers in generated plans.

python main.py mode=ppl_eval eval.checkpoint_path=outputs/run/checkpoints/last.ckpt
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hier_bd3lm.analysis import count_numbers
from hier_bd3lm.sampling import Sampler
from shared_utils.answers import INVALID, answers_match, extract_answer, extract_last_number
from shared_utils.errors import UserError


@torch.no_grad()
def evaluate_nll(model, enc, batch_size: int, mc_samples: int = 4, seed: int = 0, device="cpu",
                 limit_batches: int | None = None, per_example: bool = False) -> dict:
    model.eval()
    q = model.layout.question_len
    g = torch.Generator(device=device).manual_seed(seed)
    sums = {"loss": 0.0, "content": 0.0, "plan": 0.0, "exec": 0.0}
    counts = {k: 0.0 for k in sums}
    n_rounds = 1 if model.algo == "ar" else mc_samples
    ex_exec, ex_plan = [], []
    for bi, i in enumerate(range(0, len(enc), batch_size)):
        if limit_batches is not None and bi >= limit_batches:
            break
        x0 = enc.input_ids[i:i + batch_size].to(device)
        lm = enc.loss_mask[i:i + batch_size, q:].to(device).double()
        cm = enc.content_mask[i:i + batch_size, q:].to(device).double()
        seg = enc.segment_ids[i:i + batch_size, q:].to(device)
        tok = sum(model.token_losses(x0, g, 1e-3, 1.0).double() for _ in range(n_rounds)) / n_rounds
        for key, m in (("loss", lm), ("content", cm), ("plan", cm * (seg == 1)), ("exec", cm * (seg == 2))):
            sums[key] += float((tok * m).sum())
            counts[key] += float(m.sum())
        if per_example:  # per-problem NLL per content token of each segment (for intervals over problems)
            for key, out in (("exec", ex_exec), ("plan", ex_plan)):
                m = cm * (seg == (2 if key == "exec" else 1))
                c = m.sum(1)
                out += [float(v) if n else float("nan") for v, n in zip(((tok * m).sum(1) / c.clamp_min(1)).tolist(), c.tolist())]
    per = {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}
    return {"nll_per_loss_token": per["loss"], "nll_per_content_token": per["content"],
            "plan_nll_per_token": per["plan"], "exec_nll_per_token": per["exec"],
            "ppl_content": math.exp(per["content"]) if per["content"] == per["content"] else float("nan"),
            "n_content_tokens": counts["content"], "bound": model.algo != "ar",
            **({"per_example": {"exec_nll": ex_exec, "plan_nll": ex_plan}} if per_example else {})}


def question_prefix(enc, i, j, mask_id, layout, mode: str):
    """Prefix for sampling: the question slot kept; the generated slots MASK, except given segments."""
    x = enc.input_ids[i:j].clone()
    q = layout.question_len
    keep_plan = mode == "exec_only"
    start = q + (layout.plan_len if keep_plan else 0)
    x[:, start:] = mask_id
    return x


@torch.no_grad()
def sample_eval(model, enc, tok, batch_size: int, num_batches: int, nucleus_p: float = 1.0, kv_cache: bool = True,
                sampler: str = "first_hitting", T: int = 0, mode: str = "full", seed: int = 0, device="cpu") -> dict:
    model.eval()
    lay = model.layout
    s = Sampler(model, nucleus_p, kv_cache, sampler, T)
    g = torch.Generator(device=device).manual_seed(seed)
    rows, seconds, nfe, ran = [], 0.0, 0, 0
    for b in range(num_batches):
        i, j = b * batch_size, min(len(enc), (b + 1) * batch_size)
        if i >= j:
            break
        prefix = question_prefix(enc, i, j, tok.mask_id, lay, mode).to(device)
        out, stats = s.sample(prefix, mode, g)
        seconds += stats["seconds"]
        nfe += stats["nfe"]  # every row of a batch takes the same number of passes
        ran += 1
        for r in range(out.shape[0]):
            rows.append(_score_row(out[r].cpu(), enc.meta[i + r], tok, lay))
            if lay.plan_len:  # plan-token accuracy: sampled plan vs the gold plan on its content tokens
                q, p = lay.question_len, lay.plan_len
                m = enc.content_mask[i + r, q:q + p].bool()
                same = out[r, q:q + p].cpu()[m] == enc.input_ids[i + r, q:q + p][m]
                rows[-1]["plan_token_acc"] = float(same.float().mean()) if m.any() else float("nan")
    n = max(1, len(rows))
    return {"n": len(rows), "acc_strict": sum(r["strict_ok"] for r in rows) / n,
            "acc_flexible": sum(r["flex_ok"] for r in rows) / n,
            "invalid_strict": sum(r["strict"] == INVALID for r in rows),
            "seconds_per_sample": seconds / n, "nfe_per_sample": nfe / max(1, ran),
            "plan_numbers_mean": (sum(count_numbers(r["plan"]) for r in rows) / n) if lay.plan_len else None,
            "samples": rows}


def _score_row(ids, meta, tok, lay):
    q = lay.question_len
    plan = tok.decode(ids[q:q + lay.plan_len]) if lay.plan_len else ""
    execution = tok.decode(ids[q + lay.plan_len:])
    strict, flex = extract_answer(execution), extract_last_number(execution)
    gold = meta["answer_numerical"]
    return {"id": meta["id"], "question": meta["question"], "plan": plan, "execution": execution, "gold": gold,
            "strict": strict, "flexible": flex, "strict_ok": answers_match(strict, gold),
            "flex_ok": answers_match(flex, gold)}


def load_checkpoint(path, device="cpu"):
    """(model with EMA weights, tokenizer, Config, state) from a checkpoint; one clear line when missing."""
    from hier_bd3lm.config import config_from_dict
    from hier_bd3lm.pipeline import build_model
    from hier_bd3lm.tokenizer import tokenizer_from_state

    if path is None:
        raise UserError("eval.checkpoint_path is required for this mode")
    from hier_bd3lm.guards import load_torch_file

    p = Path(path)
    state = load_torch_file(p)
    try:
        cfg = config_from_dict(state["config"])
        tok = tokenizer_from_state(state["tokenizer"])
    except (KeyError, EOFError, RuntimeError, TypeError) as exc:
        raise UserError(f"checkpoint {p} is not a hier_bd3lm checkpoint ({type(exc).__name__}: {exc})") from None
    model = build_model(cfg, tok.vocab_size, tok.mask_id)
    model.load_state_dict(state["model"])
    for param, shadow in zip(model.backbone.parameters(), state["ema"]["shadow"]):
        param.data.copy_(shadow)
    return model.to(device).eval(), tok, cfg, state
