"""Shared fixtures; `gpu` tests skip themselves without CUDA. The tiny model is a random 2-layer Llama
with a byte-level tokenizer, saved once per session as a normal HF directory (no download)."""

import pytest

from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)


@pytest.fixture(scope="session")
def tiny_tok():
    from llm_trm.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm():
    from llm_trm.tiny import TINY_LLAMA_OVERRIDES
    from shared_utils.models import tiny_llama

    return tiny_llama(seed=0, max_position_embeddings=1024, **TINY_LLAMA_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm, tiny_tok):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_lm.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path
