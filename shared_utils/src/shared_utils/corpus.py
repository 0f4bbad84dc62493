"""An English corpus that exists on every machine: docstrings of the Python standard library.

Extracted deterministically with ``ast`` (no module is imported) from the running interpreter's stdlib
sources, in sorted file order. Each docstring is cleaned with ``inspect.cleandoc`` and split into
paragraphs; paragraphs that are mostly code or too short are dropped. Files are assigned to the
validation split by a stable hash of their relative path (about 10%), so the split never changes
for a given Python version. The result is cached as text under the shared cache directory.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import sys
import sysconfig
from pathlib import Path

from shared_utils.errors import UserError

_SKIP_DIRS = {
    "site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "ensurepip", "turtledemo",
    "__pycache__", "tkinter", "pydoc_data", "venv", "distutils", "unittest", "lib-dynload",
}
SPLITS = ("train", "validation")


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        files.append(path)
    return files


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append(inspect.cleandoc(doc))
    return out


def _is_prose(par: str) -> bool:
    words = par.split()
    if len(words) < 8:
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in par)
    return letters / max(1, len(par)) > 0.85 and not par.lstrip().startswith((">>>", "$", "%"))


def _paragraphs(doc: str) -> list[str]:
    pars = []
    for block in doc.split("\n\n"):
        text = " ".join(line.strip() for line in block.splitlines()).strip()
        if _is_prose(text):
            pars.append(text)
    return pars


def _split_of(rel: str) -> str:
    return "validation" if int(hashlib.md5(rel.encode()).hexdigest(), 16) % 10 == 0 else "train"


def _build() -> dict[str, list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for path in _stdlib_files():
        rel = path.relative_to(root).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for doc in _docstrings(source):
            for par in _paragraphs(doc):
                if par not in seen:  # deduplicate repeated boilerplate docstrings
                    seen.add(par)
                    out[_split_of(rel)].append(par)
    return out


def _cache_file() -> Path:
    from shared_utils.models import cache_root

    tag = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return cache_root() / f"stdlib_docstrings_{tag}.json"


def embedded_corpus(split: str = "train") -> list[str]:
    """Paragraphs of English prose from stdlib docstrings, ``split`` in ("train", "validation")."""
    if split not in SPLITS:
        raise UserError(f"embedded corpus split must be one of {SPLITS}, got '{split}'")
    cache = _cache_file()
    if cache.exists():
        try:
            return json.loads(cache.read_text())[split]
        except (ValueError, KeyError):
            pass  # corrupt cache: rebuild
    data = _build()
    from shared_utils.runs import atomic_write_json

    atomic_write_json(cache, data)
    return data[split]
