"""Shared fixtures; `gpu` tests skip themselves without CUDA."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# One thread: tiny models gain nothing from two, and on a shared machine OpenMP spin-waits cost 10x.
torch.set_num_threads(1)
