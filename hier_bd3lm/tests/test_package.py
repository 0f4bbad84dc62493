"""python -m pytest tests/test_package.py"""

import hier_bd3lm


def test_package_imports_with_version():
    assert hier_bd3lm.__version__.count(".") == 2
