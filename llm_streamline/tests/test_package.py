"""python -m pytest tests/test_package.py"""

import llm_streamline


def test_package_imports_with_version():
    assert llm_streamline.__version__.count(".") == 2
