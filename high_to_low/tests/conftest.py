"""Shared fixtures; `gpu` tests skip themselves without CUDA."""

import torch

from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (gpu tests skip without CUDA)

# One thread: tiny models gain nothing from two, and on a shared machine OpenMP spin-waits cost 10x.
torch.set_num_threads(1)
