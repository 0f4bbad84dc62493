"""Shared fixtures: a tiny random Llama (configs/tiny_llama.json) + byte tokenizer + a synthetic text file.

`gpu` tests skip themselves without CUDA.
"""

from pathlib import Path

import pytest
import torch

from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = str(ROOT / "configs" / "tiny_llama.json")
TINY_TEXT = str(ROOT / "tests" / "data" / "tiny_corpus.txt")


def tiny_config(tmp_path, **overrides):
    """A TrainConfig for the tiny model on the synthetic corpus (first 16 lines held out for validation)."""
    from superrelora.config import load_config

    base = dict(model_name=TINY_MODEL, dataset_name=TINY_TEXT, num_eval_samples=16, max_length=24,
                eval_max_length=24, eval_batch_size=8, lora_r=4, lora_alpha=8, merge_every=2, merge_alpha=0.1,
                max_steps=6, batch_size=4, learning_rate=5e-3, logging_steps=1, seed=7,
                output_dir=str(tmp_path / "run"), limit_train_examples=48)
    base.update(overrides)
    return load_config(None, base)


@pytest.fixture
def tiny_cfg(tmp_path):
    return lambda **kw: tiny_config(tmp_path, **kw)


@pytest.fixture
def tiny_base():
    """A fresh tiny random Llama (vocab 259 for the byte tokenizer), fp32, deterministic."""
    from shared_utils.models import tiny_llama

    return tiny_llama(seed=0, vocab_size=259)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 259, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}
