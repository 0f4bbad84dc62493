"""Original command surface: `python -m src.train.phase3_grpo` from llm_trm/ (same as `python -m llm_trm.phase3`).

`src` and `src/train` are namespace folders (no __init__.py), so this shim resolves from the project dir
and only forwards to the real code in src/llm_trm/phase3.py.
"""

from llm_trm.phase3 import main

if __name__ == "__main__":
    main()
