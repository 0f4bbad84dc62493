"""Input guards that fail with one clear line (UserError) before any expensive work.

Thin hier_bd3lm wrappers over shared_utils.runs (the resume keys of this project, checkpoint format checks
that run before torch is imported, JSON objects only).
"""

from __future__ import annotations

from pathlib import Path

from shared_utils import runs as _runs
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
    return _runs.check_output_path(path, flag, kind)


def check_output_dir(path, flag: str) -> Path:
    return check_output_path(path, flag, kind="dir")


def check_resume_config(saved: dict, new: dict, keys=RESUME_KEYS, where: str = "checkpoint") -> None:
    """Refuse a resume whose config differs from the saved one in any of `keys` (one line naming them)."""
    _runs.check_resume_config(saved, new, keys, what=where)


def load_json_file(path, what: str = "JSON file") -> dict:
    """A JSON object from `path`, with one clear line for a missing, malformed or non-object file."""
    obj = _runs.load_json_file(path, what)
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} must hold a JSON object, got {type(obj).__name__}")
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
    state = _runs.load_torch_file(check_checkpoint_file(path, what), what, weights_only=False)
    if not isinstance(state, dict):
        raise UserError(f"{what} {path} is not a hier_bd3lm checkpoint (got {type(state).__name__})")
    return state
