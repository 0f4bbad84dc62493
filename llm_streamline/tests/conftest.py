"""Shared fixtures; `gpu` tests skip themselves without CUDA. Tiny offline models come from tests/helpers.py."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A saved 6-layer tiny Llama with tied embeddings and a byte tokenizer."""
    from helpers import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", layers=6, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from helpers import write_corpus

    return write_corpus(tmp_path_factory.mktemp("data") / "corpus.txt")
