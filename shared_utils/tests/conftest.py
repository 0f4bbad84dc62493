"""Fixtures for shared_utils tests; `gpu` tests skip themselves without CUDA."""

import pytest

from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)


@pytest.fixture
def offline(monkeypatch):
    """Force offline mode for the duration of a test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
