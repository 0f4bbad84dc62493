"""python -m pytest tests/test_package.py"""

import high_to_low


def test_package_imports_with_version():
    assert high_to_low.__version__.count(".") == 2
