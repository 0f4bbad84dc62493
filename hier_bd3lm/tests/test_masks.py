"""Masks vs brute-force references built from the rules; the fork's six assertions.

python -m pytest tests/test_masks.py -q
"""

import pytest
import torch

from hier_bd3lm.masks import (
    Layout,
    block_diff_mask,
    brute_force_bd3_mask,
    brute_force_hierarchical_mask,
    create_hierarchical_mask,
    inference_mask,
    training_attributes,
    training_mask,
)


@pytest.mark.parametrize("n,bs", [(8, 1), (8, 2), (8, 8), (12, 4), (16, 4), (24, 8)])
def test_bd3_mask_matches_brute_force(n, bs):
    m = block_diff_mask(n, bs)
    assert m.shape == (2 * n, 2 * n)
    assert torch.equal(m, brute_force_bd3_mask(n, bs))


@pytest.mark.parametrize("fork", [False, True])
@pytest.mark.parametrize("Q,P,E,bs", [(4, 8, 16, 4), (3, 4, 8, 2), (5, 8, 8, 8), (2, 6, 12, 1), (4, 0, 8, 4)])
def test_hierarchical_mask_matches_brute_force(Q, P, E, bs, fork):
    m = create_hierarchical_mask(Q + P + E, bs, Q, P, E, "sdpa", fork)
    assert m.shape == (Q + 2 * P + 2 * E,) * 2
    assert torch.equal(m, brute_force_hierarchical_mask(Q, P, E, bs, fork))


def test_fork_assertions_and_shapes():
    import test_hierarchical_mask as script  # the project-root script (README: python test_hierarchical_mask.py)

    for Q, P, E, bs in [(64, 64, 128, 16), (16, 32, 64, 8)]:
        for fork in (False, True):
            script.check(Q, P, E, bs, fork)


def test_question_zero_is_plain_bd3():
    lay = Layout(0, 8, 8, 4)
    a = training_attributes(lay)  # fork order [P_xt | P_x0 | E_xt | E_x0] -> bd3lms order [x_t | x_0]
    perm = sorted(range(32), key=lambda i: (int(a["kind"][i]), int(a["src"][i])))
    m = training_mask(lay)[perm][:, perm]
    assert torch.equal(m, block_diff_mask(16, 4))


def test_canonical_and_fork_variant_differ_only_on_exec_to_noisy_plan():
    lay = Layout(4, 8, 8, 4)
    a, b = training_mask(lay), training_mask(lay, exec_sees_noisy_plan=True)
    attrs = training_attributes(lay)
    diff = a != b
    rows, cols = diff.nonzero(as_tuple=True)
    assert len(rows) > 0
    assert (attrs["seg"][rows] == 2).all() and (attrs["seg"][cols] == 1).all() and (attrs["kind"][cols] == 1).all()


@pytest.mark.parametrize("b", [0, 1, 2, 3])
def test_inference_mask_is_training_mask_restricted(b):
    lay = Layout(3, 8, 8, 4)
    a = training_attributes(lay)
    full = training_mask(lay)
    q, bs = lay.question_len, lay.block_size
    # slots: question, clean copies of blocks < b, noisy copy of block b (natural order)
    keep = [i for i in range(len(a["kind"])) if a["kind"][i] == 0
            or (a["kind"][i] == 2 and a["block"][i] < b) or (a["kind"][i] == 1 and a["block"][i] == b)]
    keep = torch.tensor(sorted(keep, key=lambda i: int(a["src"][i])))
    assert torch.equal(a["src"][keep], torch.arange(q + (b + 1) * bs))
    assert torch.equal(full[keep][:, keep], inference_mask(lay, b))


def test_positions_shared_by_both_copies():
    a = training_attributes(Layout(2, 4, 4, 2))
    noisy, clean = a["pos"][a["kind"] == 1], a["pos"][a["kind"] == 2]
    assert torch.equal(noisy, clean) and torch.equal(noisy, torch.arange(2, 10))


def test_block_that_straddles_plan_and_exec_is_refused():
    # B=4 with P=6 used to put plan tokens 4-5 and exec tokens 0-1 in one block (8 plan->exec cells open)
    with pytest.raises(ValueError, match="does not divide plan_len 6"):
        create_hierarchical_mask(6 + 6 + 8, 4, 6, 6, 8)
    with pytest.raises(ValueError, match="does not divide exec_len 6"):
        Layout(4, 8, 6, 4)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        Layout(4, 8, 8, 0)
    # a dividing block size keeps the plan blind to the execution
    m = create_hierarchical_mask(6 + 8 + 8, 4, 6, 8, 8)
    plan = slice(6, 6 + 16)
    assert not m[plan, 6 + 16:].any()


def test_config_refuses_straddling_block_before_any_work():
    from hier_bd3lm.config import parse_overrides
    from shared_utils.errors import UserError

    with pytest.raises(UserError, match="does not divide plan_len 6"):
        parse_overrides(["block_size=4", "training.hierarchical.question_len=4", "training.hierarchical.plan_len=6",
                         "training.hierarchical.exec_len=8", "training.hierarchical.total_len=18"])
