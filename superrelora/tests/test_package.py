"""python -m pytest tests/test_package.py"""

import superrelora


def test_package_imports_with_version():
    assert superrelora.__version__.count(".") == 2
