"""Compressor, metric formulas and the truncated-SVD optimum: python -m pytest tests/test_compression.py -q"""

import math

import pytest
import torch

from llm_trm.compression import (
    DimensionCompressor,
    apply_reference,
    compute_metrics,
    masked_mse,
    strip_compile_prefix,
    svd_reference,
)


def test_shapes_tying_and_params():
    c = DimensionCompressor(64, 8)
    x = torch.randn(2, 5, 64)
    z = c(x)
    assert z.shape == (2, 5, 8) and c.decompress(z).shape == (2, 5, 64)
    assert [n for n, _ in c.named_parameters()] == ["compress.weight"]
    assert sum(p.numel() for p in c.parameters()) == 64 * 8 and c.compress.bias is None
    w = c.compress.weight
    assert torch.allclose(c.decompress(z), z @ w, atol=1e-6)  # decoder is W^T applied as c.W
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-5)  # orthonormal rows at init
    assert c.compression_ratio == 8
    assert torch.allclose(c.reconstruction_loss(x), ((c.reconstruct(x) - x) ** 2).mean())


def test_dtype_cast_and_bad_width():
    c = DimensionCompressor(16, 4)
    assert c.decompress(torch.randn(3, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        DimensionCompressor(16, 17)


def test_metrics_hand_computed():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    x_hat = torch.tensor([[[2.0, 1.0], [0.0, 2.0]]])
    m = compute_metrics(x, x_hat)
    assert m["mse"] == pytest.approx(0.75)
    assert m["cosine_similarity"] == pytest.approx((2 / math.sqrt(5) + 1) / 2, abs=1e-6)
    assert m["relative_error"] == pytest.approx(math.sqrt(3 / 2), abs=1e-6)
    assert m["variance_ratio"] == pytest.approx((4 + 1) / 2, abs=1e-5)  # mean of per-dim ratios, unbiased var


def test_metrics_identity_zero_and_mask():
    x = torch.randn(2, 6, 8)
    assert compute_metrics(x, x) == pytest.approx({"mse": 0, "cosine_similarity": 1, "relative_error": 0,
                                                   "variance_ratio": 1}, abs=1e-5)
    z = compute_metrics(x, torch.zeros_like(x))
    assert z["cosine_similarity"] == 0 and z["relative_error"] == pytest.approx(1) and z["variance_ratio"] == 0
    mask = torch.ones(2, 6)
    mask[:, 4:] = 0
    garbage = x.clone()
    garbage[:, 4:] = 100.0  # padding rows differ, but are masked out
    assert compute_metrics(x, garbage, mask)["mse"] == pytest.approx(0)
    assert masked_mse(garbage, x, mask).item() == pytest.approx(0)
    assert masked_mse(garbage, x).item() > 100


def test_projection_identities():
    c = DimensionCompressor(16, 5)
    x = torch.randn(1, 40, 16)
    p = c.compress.weight.T @ c.compress.weight  # W^T W: an orthogonal projection at init
    px = x @ p
    m = compute_metrics(x, c.reconstruct(x))
    cos_t = px.norm(dim=-1) / x.norm(dim=-1)
    assert m["cosine_similarity"] == pytest.approx(cos_t.mean().item(), abs=1e-5)
    assert m["relative_error"] ** 2 == pytest.approx(1 - (px.norm() ** 2 / x.norm() ** 2).item(), abs=1e-5)


def _low_rank(n=600, d=24, rank=4, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, d, generator=g)
    scales = torch.tensor([4.0, 3.0, 2.0, 1.0])[:rank, None]
    return torch.randn(n, rank, generator=g) @ (scales * basis) + noise * torch.randn(n, d, generator=g)


def test_svd_reference_is_exact_and_zero_at_full_rank():
    x = _low_rank(noise=0.0)
    ref = svd_reference(x, [2, 4, 6])
    for r in ref.values():
        emp = ((apply_reference(x, r) - x) ** 2).mean().item()
        assert emp == pytest.approx(r["train_mse"], rel=1e-4, abs=1e-8)
    assert ref[4]["train_mse"] < 1e-10 and ref[6]["train_mse"] < 1e-10  # D' >= rank: exact
    assert ref[2]["train_mse"] > ref[4]["train_mse"]


def test_centered_pca_beats_uncentered_with_a_large_mean():
    x = _low_rank() + 5.0
    unc, cen = svd_reference(x, [2])[2], svd_reference(x, [2], centered=True)[2]
    assert cen["train_mse"] < unc["train_mse"]


def test_trained_compressor_approaches_svd_optimum():
    torch.manual_seed(0)
    x = _low_rank(n=200, rank=4)
    k = 3
    opt_mse = svd_reference(x, [k])[k]["train_mse"]
    comp = DimensionCompressor(24, k)
    opt = torch.optim.Adam(comp.parameters(), lr=2e-2)
    for _ in range(500):
        opt.zero_grad()
        loss = comp.reconstruction_loss(x)
        loss.backward()
        opt.step()
    final = comp.reconstruction_loss(x).item()
    assert final >= opt_mse * (1 - 1e-3)  # can never beat Eckart-Young
    assert final <= opt_mse * 1.03  # and gets within 3%
    w = comp.compress.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(k), atol=0.05)  # at the optimum W W^T = I


def test_strip_compile_prefix():
    sd = {"_orig_mod.compress.weight": torch.zeros(1)}
    assert list(strip_compile_prefix(sd)) == ["compress.weight"]
