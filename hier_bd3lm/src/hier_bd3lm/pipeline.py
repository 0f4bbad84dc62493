"""What training and evaluation both need: records for a config, encoding, the model, the checkpoint path.

Kept apart from train.py and evaluate.py so that neither imports the other's module (no import cycle).
"""

from __future__ import annotations

from pathlib import Path

from hier_bd3lm.config import Config, layout_of
from hier_bd3lm.data import Encoded, encode_records, exec_text, read_records
from hier_bd3lm.diffusion import BlockDiffusion
from hier_bd3lm.model import DiT
from hier_bd3lm.noise import Noise


def gsm8k_records(split: str, data_path, limit=None) -> list[dict]:
    """Official GSM8K rows -> README records with rule-based plans (used when no data.train_path)."""
    from hier_bd3lm.plans import build_record, rule_plan
    from shared_utils.data import load_gsm8k

    rows = load_gsm8k(split, data_path, limit)
    return [build_record(split, i, r, rule_plan(r["answer"])) for i, r in enumerate(rows)]


def load_records(cfg: Config) -> tuple[list[dict], list[dict]]:
    d = cfg.data
    if d.train_path:
        train = read_records(d.train_path)[: d.limit_train]
    else:
        train = gsm8k_records("train", d.gsm8k_path, d.limit_train)
    if d.test_path:
        valid = read_records(d.test_path)
    elif d.train_path:  # hold out the tail of the train file
        n_val = max(1, int(len(train) * d.valid_fraction))
        train, valid = train[:-n_val] if len(train) > n_val else train, train[-n_val:]
    else:
        valid = gsm8k_records("test", d.gsm8k_path, d.limit_valid)
    return train, valid[: d.limit_valid]


def record_texts(records) -> list[str]:
    return [t for r in records for t in (str(r["question"]).strip(), str(r["plan"]).strip(), exec_text(r))]


def encode(cfg: Config, records, tok) -> Encoded:
    return encode_records(records, tok, layout_of(cfg), cfg.data.exec_include_answer, cfg.training.pad_in_loss)


# ------------------------------------------------------------------------------------------------ model
def build_model(cfg: Config, vocab_size: int, mask_id: int) -> BlockDiffusion:
    m, tr = cfg.model, cfg.training
    ar = cfg.algo.name == "ar"
    net = DiT(vocab_size, m.hidden_size, m.n_blocks, m.n_heads, m.cond_dim, m.dropout, causal=ar, adaln=m.adaln)
    return BlockDiffusion(net, layout_of(cfg), mask_id, "ar" if ar else "bd3lm", Noise(cfg.noise.type, cfg.noise.eps),
                          tr.antithetic_sampling, tr.sampling_eps_min, tr.sampling_eps_max, tr.resample,
                          tr.hierarchical.exec_sees_noisy_plan)


def checkpoint_path(cfg: Config) -> Path:
    return Path(cfg.checkpointing.save_dir) / "checkpoints" / "last.ckpt"
