"""The workspace's pytest hook: tests marked ``gpu`` skip themselves when CUDA is absent.

Every project's ``tests/conftest.py`` imports it:
    from shared_utils.pytest_plugin import pytest_collection_modifyitems  # noqa: F401
so ``make test-gpu`` on a CPU machine reports skips instead of failures.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
