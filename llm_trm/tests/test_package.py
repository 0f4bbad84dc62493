"""python -m pytest tests/test_package.py"""

import llm_trm


def test_package_imports_with_version():
    assert llm_trm.__version__.count(".") == 2
