"""Input guards that fail with one clear line (UserError) before any expensive work.

Local versions of helpers the workspace plans for shared_utils.runs (`check_output_path`,
`check_resume_config`, `load_torch_file`); the shared ones are used when present.
"""

from __future__ import annotations

from pathlib import Path

from shared_utils.errors import UserError

# What a resumed run must share with the checkpoint it resumes (layout, tokenizer, algorithm, model).
RESUME_KEYS = (
    "block_size", "algo.name", "training.hierarchical.enabled", "training.hierarchical.question_len",
    "training.hierarchical.plan_len", "training.hierarchical.exec_len", "training.hierarchical.total_len",
    "training.hierarchical.exec_sees_noisy_plan", "data.tokenizer", "data.max_vocab", "data.exec_include_answer",
    "model.hidden_size", "model.cond_dim", "model.n_blocks", "model.n_heads", "model.adaln", "noise.type",
)


def check_output_path(path, flag: str, kind: str = "file") -> Path:
    """`path` must be creatable as a `kind` ("file" or "dir"): not under an existing file, not the other kind."""
    try:
        from shared_utils.runs import check_output_path as shared
    except ImportError:
        shared = None
    if shared is not None:
        return Path(shared(path, flag, kind))
    p = Path(path).expanduser()
    if kind == "dir" and p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is an existing file, not a directory")
    if kind == "file" and p.is_dir():
        raise UserError(f"{flag} {p} is an existing directory, not a file")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {p}: {parent} is a file, so nothing can be written below it")
            break
    return p


def check_output_dir(path, flag: str) -> Path:
    return check_output_path(path, flag, kind="dir")


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def check_resume_config(saved: dict, new: dict, keys=RESUME_KEYS, where: str = "checkpoint") -> None:
    """Refuse a resume whose config differs from the saved one in any of `keys` (one line naming them)."""
    diff = [(k, _get(saved, k), _get(new, k)) for k in keys if _get(saved, k) != _get(new, k)]
    if diff:
        parts = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in diff)
        raise UserError(f"cannot resume from {where}: the config differs in {parts} "
                        f"(use another checkpointing.save_dir or the saved settings)")


def load_json_file(path, what: str = "JSON file"):
    """json.load with one clear line for a missing or malformed file."""
    import json

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {p} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} {p} must hold a JSON object, got {type(obj).__name__}")
    return obj


def check_checkpoint_file(path, what: str = "checkpoint") -> Path:
    """Exists and is a complete zip archive (torch.save's format), checked without importing torch."""
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist")
    if not zipfile.is_zipfile(p):
        raise UserError(f"{what} {p} is corrupt or truncated (not a complete torch.save archive)")
    return p


def load_torch_file(path, what: str = "checkpoint") -> dict:
    """torch.load with one clear line for a missing, truncated or foreign file."""
    import pickle
    import zipfile

    import torch

    p = check_checkpoint_file(path, what)
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, ImportError, IndexError, TypeError) as exc:
        raise UserError(f"{what} {p} is corrupt or truncated ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict):
        raise UserError(f"{what} {p} is not a hier_bd3lm checkpoint (got {type(state).__name__})")
    return state
