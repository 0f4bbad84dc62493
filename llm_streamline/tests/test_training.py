"""MSE and LLM-loss training on a tiny Llama.  python -m pytest tests/test_training.py -q"""

import argparse

import pytest
import torch
from helpers import tiny_model

from llm_streamline import data as D
from llm_streamline.adapters import get_adapter
from llm_streamline.hidden_cache import PairStore, collect_pairs
from llm_streamline.lightweight import build_lightweight, trainable_parameters
from llm_streamline.llm_train import lightweight_slots, train_llm
from llm_streamline.mse_train import masked_mse, train_mse
from llm_streamline.pipeline import assemble
from shared_utils.errors import UserError


def targs(**kw):
    base = dict(lr=2e-3, min_lr=1e-4, wd=1e-3, batch_size=4, gradient_accumulation_step=2, epoches=2, seed=0,
                lr_schedule="fixed", warmup_ratio=0.0, max_grad_norm=-1.0, mse_loss_start=0, mixed_precision="no",
                device="cpu")
    base.update(kw)
    return argparse.Namespace(**base)


def test_masked_mse_equals_mse_loss_without_padding():
    a, b = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    torch.testing.assert_close(masked_mse(a, b, torch.ones(2, 5)), torch.nn.functional.mse_loss(a, b))
    torch.testing.assert_close(masked_mse(a, b, None, start=1), torch.nn.functional.mse_loss(a[:, 1:], b[:, 1:]))


def test_memory_and_memmap_stores_give_identical_pairs(tmp_path):
    model = tiny_model(6)
    blocks = torch.randint(0, 256, (10, 16))
    mem = collect_pairs(model, D.batches(blocks, 4), best=1, n=2, mode="memory")
    disk = collect_pairs(model, D.batches(blocks, 3), best=1, n=2, mode="disk", cache_dir=str(tmp_path))
    assert mem.mode == "memory" and disk.mode == "disk"
    assert any(tmp_path.rglob("x.bin"))
    torch.testing.assert_close(mem.x, disk.x)
    torch.testing.assert_close(mem.y, disk.y)
    ref = model(blocks[:2], output_hidden_states=True).hidden_states
    torch.testing.assert_close(mem.x[:2], ref[1])
    torch.testing.assert_close(mem.y[:2], ref[4])
    disk.close()
    assert not any(tmp_path.rglob("x.bin"))


def test_auto_store_falls_back_to_disk_when_it_would_not_fit(tmp_path):
    store = PairStore(4, 8, 16, mode="auto", cache_dir=str(tmp_path), memory_fraction=1e-12)
    assert store.mode == "disk"
    store.close()
    with pytest.raises(UserError, match="hidden_cache"):
        PairStore(1, 2, 2, mode="ram")


@pytest.mark.parametrize("kind", ["layer", "swiglu", "ffn"])
def test_mse_training_lowers_validation_and_keeps_a_real_best_copy(kind):
    torch.manual_seed(0)
    model = tiny_model(6)
    blocks = torch.randint(0, 256, (24, 16))
    train = collect_pairs(model, D.batches(blocks[:16], 4), 1, 2)
    # random-token targets of a random model: only the full layer generalises to held-out blocks; the MLP-only
    # variants are checked on fitting the training pairs (validation = training pairs)
    test = collect_pairs(model, D.batches(blocks[16:], 4), 1, 2) if kind == "layer" else train
    mods = build_lightweight(model, kind, 1, seed=0)
    before = {k: v.clone() for k, v in mods.state_dict().items()}
    hist = train_mse(model, mods, kind, train, test, targs(epoches=3), "cpu", log=lambda *_: None)
    assert hist["best_val_mse"] < hist["val_mse"][0]
    assert min(hist["val_mse"]) == hist["best_val_mse"]
    assert any(not torch.equal(before[k], v) for k, v in mods.state_dict().items())
    if kind == "swiglu":  # attention stays off (zero output projection) and frozen
        assert torch.count_nonzero(mods[0].self_attn.o_proj.weight) == 0
        torch.testing.assert_close(mods[0].self_attn.q_proj.weight, before["0.self_attn.q_proj.weight"])


def test_llm_loss_trains_only_the_lightweight_layer():
    """best = 2 on a 23-layer model: the original's substring "layers.2" would also unfreeze layers 20-22."""
    from accelerate import Accelerator

    model = tiny_model(23, hidden_size=32, intermediate_size=64)
    mods = build_lightweight(model, "layer", 2)
    pruned = assemble(model, 2, 3, "layer", mods)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    trainable = trainable_parameters(lightweight_slots(pruned, 2, 1), "layer", get_adapter(pruned))
    blocks = torch.randint(0, 256, (12, 16))
    # validate on the training blocks: random tokens give nothing to generalise to, fitting them is the check
    hist = train_llm(pruned, trainable, blocks, blocks, targs(lr=1e-2, epoches=3, gradient_accumulation_step=1),
                     Accelerator(cpu=True), best=2, k=1, log=lambda *_: None)
    assert hist["best_val_loss"] < hist["val_loss"][0]
    changed = {k for k, v in pruned.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("model.layers.2.") for k in changed), sorted(changed)[:5]
    assert any(k.startswith("model.layers.2.") for k in changed)
