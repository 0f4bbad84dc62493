"""Shared fixtures; `gpu` tests skip themselves without CUDA. Tiny models are built in-process (no download)."""

from pathlib import Path

import torch

from hier_bd3lm.diffusion import BlockDiffusion
from hier_bd3lm.masks import Layout
from hier_bd3lm.model import DiT
from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)

torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core machine
FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = Path(__file__).resolve().parents[1]


def make_model(layout: Layout, vocab: int = 23, algo: str = "bd3lm", seed: int = 0, randomize: bool = True,
               dtype=torch.float64, **kw) -> BlockDiffusion:
    """A tiny BD3-LM / AR model; `randomize` replaces the zero inits so every path carries signal."""
    torch.manual_seed(seed)
    net = DiT(vocab, hidden_size=16, n_blocks=2, n_heads=2, cond_dim=8, dropout=0.0, causal=algo == "ar")
    if randomize:
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.3)
    model = BlockDiffusion(net, layout, mask_id=vocab - 1, algo=algo, **kw)
    return model.to(dtype).eval()


def random_x0(layout: Layout, batch: int, vocab: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab - 1, (batch, layout.total_len), generator=g)
