"""Block selection and ShortGPT Block Influence vs brute force.  python -m pytest tests/test_selection.py -q"""

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model

from llm_streamline.selection import (
    best_block,
    block_influence_per_sample,
    block_scores_per_sample,
    lowest_influence_layers,
    residual_states,
    score_blocks,
)
from shared_utils.errors import UserError


def brute_force_score(a: torch.Tensor, b: torch.Tensor) -> float:
    """The original's formulation: T x T cosine matrix, 0.5 + 0.5 * entry, trace / T."""
    an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    mat = 0.5 + 0.5 * (an @ bn.T)
    return float(torch.trace(mat) / a.shape[0])


def make_identity(model, layers):
    """Zero the residual writes of ``layers`` so they compute the identity (a planted redundant block)."""
    with torch.no_grad():
        for i in layers:
            model.model.layers[i].self_attn.o_proj.weight.zero_()
            model.model.layers[i].mlp.down_proj.weight.zero_()


def test_residual_states_match_hf_hidden_states():
    model = tiny_model(5)
    ids = torch.randint(0, 256, (2, 12))
    ref = model(ids, output_hidden_states=True).hidden_states
    got = residual_states(model, ids)
    for k in range(5):
        torch.testing.assert_close(got[k], ref[k])
    # our last entry is pre-norm (HF's is post-norm: the original's bug 10)
    torch.testing.assert_close(model.model.norm(got[5]), ref[5])


def test_early_stop_returns_only_requested():
    model = tiny_model(5)
    got = residual_states(model, torch.randint(0, 256, (1, 8)), indices=(1, 3))
    assert set(got) == {1, 3}


def test_scores_match_trace_reference_and_candidate_count():
    torch.manual_seed(0)
    hs = [torch.randn(3, 7, 16) for _ in range(7)]  # L = 6
    n = 2
    scores = block_scores_per_sample(hs, n)
    assert scores.shape == (3, 6 - n)
    for s in range(3):
        for j in range(6 - n):
            assert scores[s, j].item() == pytest.approx(brute_force_score(hs[j][s], hs[j + n + 1][s]), abs=1e-5)


def test_planted_redundant_block_is_selected_on_tiny_llama():
    model = tiny_model(8)
    make_identity(model, [3, 4, 5])  # hs[3] == hs[6]: block 3..5 is redundant for n = 2
    batches = [{"input_ids": torch.randint(0, 256, (2, 16))}]
    sel = score_blocks(model, batches, n=2)
    assert len(sel["scores"]) == 8 - 2
    assert sel["best_layer"] == 3
    assert sel["scores"][3] == pytest.approx(1.0, abs=1e-5)
    # ShortGPT sees the same three layers as useless (BI = 0)
    assert lowest_influence_layers(sel["block_influence"], 3) == [3, 4, 5]


def test_block_influence_brute_force():
    torch.manual_seed(1)
    hs = [torch.randn(2, 5, 8) for _ in range(4)]
    bi = block_influence_per_sample(hs)
    for i in range(3):
        ref = 1 - F.cosine_similarity(hs[i], hs[i + 1], dim=-1).mean(dim=1)
        torch.testing.assert_close(bi[:, i], ref)


def test_ties_choose_lowest_index_and_affine_map_keeps_argmax():
    assert best_block([0.5, 0.9, 0.9, 0.1]) == 1
    assert lowest_influence_layers([0.2, 0.1, 0.1, 0.3], 2) == [1, 2]
    raw = torch.tensor([0.1, -0.3, 0.7, 0.2])
    assert best_block(raw) == best_block(0.5 + 0.5 * raw)


def test_padding_mask_excludes_pad_tokens():
    a = torch.randn(1, 4, 8)
    b = a.clone()
    b[0, 3] = -a[0, 3]  # a padded position that disagrees completely
    mask = torch.tensor([[1, 1, 1, 0]])
    assert block_scores_per_sample([a, a, b], 1, mask)[0, 0].item() == pytest.approx(1.0, abs=1e-6)


def test_interval_out_of_range_is_user_error():
    hs = [torch.randn(1, 3, 4) for _ in range(5)]
    with pytest.raises(UserError, match="layer_intervals"):
        block_scores_per_sample(hs, 4)
