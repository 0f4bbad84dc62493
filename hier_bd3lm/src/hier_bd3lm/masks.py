"""Attention masks of BD3-LM and of the hierarchical [Question | Plan | Execution] layout.

Training input (fork order, length Q + 2P + 2E): [Question | Plan_xt | Plan_x0 | Exec_xt | Exec_x0].
Plain BD3-LM is the special case Q = 0 with one segment: [x_t | x_0]; the Flat layout is [Q | E_xt | E_x0].

Allowed query -> key (True = may attend), see spec sections 1.6 and 2.2:
  question -> question (all); any generated token -> question (all);
  noisy -> noisy of the same block (M_BD); noisy -> clean of strictly earlier blocks (M_OBC);
  clean -> clean of earlier-or-same blocks (M_BC).
Blocks are numbered over the generated region [P | E], so every plan block precedes every exec block: the
plan never sees the execution and the execution sees the whole clean plan. `exec_sees_noisy_plan=True` adds
the fork's rule 7 (exec queries also read Plan_xt), which breaks exact KV caching (kept for comparison only).

python -m pytest tests/test_masks.py
"""

from __future__ import annotations

import torch

from hier_bd3lm.layout import Layout  # noqa: F401  (re-exported)

QUESTION, NOISY, CLEAN = 0, 1, 2


def training_attributes(layout: Layout) -> dict[str, torch.Tensor]:
    """Per-index attributes of the 2-copy training input in fork order.

    Returns kind (QUESTION/NOISY/CLEAN), block (global block over the generated region, -1 on the question),
    seg (0 question, 1 plan, 2 exec), pos (rotary position; both copies share it) and src (index into the
    natural-order sequence [Q | P | E] that the slot holds).
    """
    q = layout.question_len
    kind, block, seg, pos = [QUESTION] * q, [-1] * q, [0] * q, list(range(q))
    for name, start, n in layout.segments():
        seg_id = 1 if name == "plan" else 2
        for k in (NOISY, CLEAN):
            for j in range(start, start + n):
                kind.append(k)
                block.append((j - q) // layout.block_size)
                seg.append(seg_id)
                pos.append(j)
    t = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return {"kind": t(kind), "block": t(block), "seg": t(seg), "pos": t(pos), "src": t(pos)}


def mask_from_attributes(kind, block, seg, exec_sees_noisy_plan: bool = False) -> torch.Tensor:
    """Vectorised mask from per-index attributes (query rows, key columns)."""
    kq, kk = kind[:, None], kind[None, :]
    bq, bk = block[:, None], block[None, :]
    m = kk == QUESTION  # everyone sees the question (the question sees only itself, via kk == QUESTION)
    gen_q = kq != QUESTION
    m = m | (gen_q & (kq == NOISY) & (kk == NOISY) & (bq == bk))
    m = m | (gen_q & (kq == NOISY) & (kk == CLEAN) & (bk < bq))
    m = m | (gen_q & (kq == CLEAN) & (kk == CLEAN) & (bk <= bq))
    if exec_sees_noisy_plan:
        m = m | ((seg[:, None] == 2) & (seg[None, :] == 1) & (kk == NOISY))
    return m


def training_mask(layout: Layout, exec_sees_noisy_plan: bool = False) -> torch.Tensor:
    a = training_attributes(layout)
    return mask_from_attributes(a["kind"], a["block"], a["seg"], exec_sees_noisy_plan)


def block_diff_mask(seq_len: int, block_size: int) -> torch.Tensor:
    """BD3-LM mask for [x_t | x_0] of total length 2 * seq_len (bd3lms models/dit.py `block_diff_mask`)."""
    return training_mask(Layout(0, 0, seq_len, block_size))


def create_hierarchical_mask(seqlen: int, block_size: int, question_len: int, plan_len: int, exec_len: int,
                             attn_backend: str = "sdpa", exec_sees_noisy_plan: bool = False) -> torch.Tensor:
    """The fork's entry point: dense boolean mask of shape (Q+2P+2E, Q+2P+2E) in fork order."""
    if attn_backend not in ("sdpa", "flex"):
        raise ValueError(f"attn_backend must be sdpa or flex, got {attn_backend}")
    if seqlen != question_len + plan_len + exec_len:
        raise ValueError(f"seqlen {seqlen} != question_len + plan_len + exec_len")
    return training_mask(Layout(question_len, plan_len, exec_len, block_size), exec_sees_noisy_plan)


def inference_mask(layout: Layout, n_clean_blocks: int, causal: bool = False) -> torch.Tensor:
    """Mask over the natural-order prefix [Q | clean blocks < b | noisy block b] used without a KV cache.

    Equals the training mask restricted to those slots; `causal=True` gives the AR model's lower triangle.
    """
    n = layout.question_len + (n_clean_blocks + 1) * layout.block_size
    if causal:
        return torch.ones(n, n, dtype=torch.bool).tril()
    idx = torch.arange(n)
    blk = torch.where(idx < layout.question_len, -1, (idx - layout.question_len) // layout.block_size)
    kind = torch.where(idx < layout.question_len, QUESTION, CLEAN)
    kind[blk == n_clean_blocks] = NOISY
    seg = torch.zeros_like(idx)
    return mask_from_attributes(kind, blk, seg)


# ----------------------------------------------------------------------------------------------------------
# Brute-force references written straight from the rules (used by the tests; deliberately loop-based).

def brute_force_bd3_mask(n: int, block_size: int) -> torch.Tensor:
    """bd3lms rule set over [x_t | x_0] (spec 1.6), by a double loop."""
    m = [[False] * (2 * n) for _ in range(2 * n)]
    for q in range(2 * n):
        for k in range(2 * n):
            q_noisy, k_noisy = q < n, k < n
            bq, bk = (q % n) // block_size, (k % n) // block_size
            bd = q_noisy == k_noisy and bq == bk
            obc = q_noisy and not k_noisy and bk < bq
            bc = not q_noisy and not k_noisy and bk <= bq
            m[q][k] = bd or obc or bc
    return torch.tensor(m, dtype=torch.bool)


def brute_force_hierarchical_mask(question_len: int, plan_len: int, exec_len: int, block_size: int,
                                  exec_sees_noisy_plan: bool = False) -> torch.Tensor:
    """Fork rules 1-9 of spec 2.2 over [Q | P_xt | P_x0 | E_xt | E_x0], blocks counted inside each segment.

    Rule 7 is "exec -> plan_x0 all" (canonical) or "exec -> plan_xt and plan_x0 all" (fork variant).
    """
    Q, P, E = question_len, plan_len, exec_len
    lengths = {"q": Q, "pxt": P, "px0": P, "ext": E, "ex0": E}
    regions = []
    for name in ("q", "pxt", "px0", "ext", "ex0"):
        regions += [(name, j) for j in range(lengths[name])]
    n = len(regions)
    m = [[False] * n for _ in range(n)]
    for qi, (rq, jq) in enumerate(regions):
        for ki, (rk, jk) in enumerate(regions):
            bq, bk = jq // block_size, jk // block_size
            ok = False
            if rk == "q":
                ok = True  # rules 1, 2, 6
            elif rq in ("pxt", "px0") and rk in ("pxt", "px0"):
                ok = ((rq == rk and bq == bk) or (rq == "pxt" and rk == "px0" and bk < bq)
                      or (rq == "px0" and rk == "px0" and bk <= bq))  # rules 3-5
            elif rq in ("ext", "ex0") and rk in ("ext", "ex0"):
                ok = ((rq == rk and bq == bk) or (rq == "ext" and rk == "ex0" and bk < bq)
                      or (rq == "ex0" and rk == "ex0" and bk <= bq))  # rule 8
            elif rq in ("ext", "ex0") and rk == "px0":
                ok = True  # rule 7 (canonical part)
            elif rq in ("ext", "ex0") and rk == "pxt":
                ok = exec_sees_noisy_plan  # rule 7 (fork variant)
            m[qi][ki] = ok  # rule 9 (plan never sees exec) by omission
    return torch.tensor(m, dtype=torch.bool)
