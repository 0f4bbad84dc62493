"""Tiny offline checkpoints for the tests: a random Llama (or OPT) plus a byte-level tokenizer (no download)."""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.models import tiny_llama


def byte_tokenizer():
    """A fast byte-level tokenizer: ids 0..255 are bytes (via GPT-2's byte alphabet), 256.. special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    return fast


def tiny_model(layers: int = 6, seed: int = 0, **overrides):
    return tiny_llama(seed=seed, num_hidden_layers=layers, vocab_size=260, max_position_embeddings=512, **overrides)


def save_tiny(path: Path, layers: int = 6, seed: int = 0, **overrides) -> Path:
    """Save a tiny Llama + byte tokenizer as a Hugging Face directory."""
    model = tiny_model(layers, seed, **overrides)
    tok = byte_tokenizer()
    model.config.eos_token_id = model.config.pad_token_id = tok.convert_tokens_to_ids("<eos>")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def tiny_opt(layers: int = 4, seed: int = 0):
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(vocab_size=260, hidden_size=32, ffn_dim=64, num_hidden_layers=layers, num_attention_heads=4,
                    max_position_embeddings=256, word_embed_proj_dim=32, pad_token_id=1, dropout=0.0,
                    attention_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OPTForCausalLM(cfg).eval()


TEXT = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
    "All that glitters is not gold. The early bird catches the worm, but the second mouse gets the cheese. "
)


def write_corpus(path: Path, lines: int = 200) -> Path:
    import random

    rng = random.Random(0)
    words = TEXT.split()
    rows = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) for _ in range(lines)]
    path.write_text("\n".join(rows) + "\n")
    return path
