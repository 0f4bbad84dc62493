"""Original command surface: `python -m src.train.phase2_datagen` from llm_trm/ (same as `python -m llm_trm.phase2_datagen`).

`src` and `src/train` are namespace folders (no __init__.py), so this shim resolves from the project dir
and only forwards to the real code in src/llm_trm/phase2_datagen.py.
"""

from llm_trm.phase2_datagen import main

if __name__ == "__main__":
    main()
