"""Original command surface: `python -m src.train.phase2_trm` from llm_trm/ (same as `python -m llm_trm.phase2`).

`src` and `src/train` are namespace folders (no __init__.py), so this shim resolves from the project dir
and only forwards to the real code in src/llm_trm/phase2.py.
"""

from llm_trm.phase2 import main

if __name__ == "__main__":
    main()
