"""Input checks shared by the llm_trm CLIs: readable files, output paths, resume settings (one-line errors).

These follow the interface announced for ``shared_utils.runs`` (``load_torch_file``, ``check_output_path``,
``check_resume_config``); the shared versions are used when the installed shared_utils has them.

    python -m pytest tests/test_bad_inputs.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch

from shared_utils import runs as _runs
from shared_utils.errors import UserError


def _local_load_torch_file(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated / not a torch file / pickled objects
        raise UserError(f"{what} {path} is not a readable torch file ({type(exc).__name__})") from None


def _local_check_output_path(path: str | Path, flag: str) -> Path:
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UserError(f"{flag} {path}: {p} is an existing file, not a folder")
    return path


def _local_check_resume_config(saved: dict, new: dict, keys: Iterable[str]) -> None:
    diff = [k for k in keys if saved.get(k) != new.get(k)]
    if diff:
        pairs = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {new.get(k)!r}" for k in diff)
        raise UserError(f"cannot resume: settings differ from the checkpoint ({pairs})")


def _local_load_json_file(path: str | Path, what: str) -> Any:
    import json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc})") from None


load_json_file = getattr(_runs, "load_json_file", _local_load_json_file)
load_torch_file = getattr(_runs, "load_torch_file", _local_load_torch_file)
check_output_path = getattr(_runs, "check_output_path", _local_check_output_path)
check_resume_config = getattr(_runs, "check_resume_config", _local_check_resume_config)


def check_data_path(path: str | None, flag: str = "--data_path", names: Iterable[str] = ()) -> None:
    """A given ``--data_path`` must exist (file or folder) before any model work (``names``: source names
    that are not paths, e.g. a Hub dataset)."""
    if path and path not in set(names) and not Path(path).exists():
        raise UserError(f"{flag} {path} does not exist")


def require_positive(cfg, names: Iterable[str], floats: Iterable[str] = ()) -> None:
    """One line naming every integer flag in ``names`` below 1 and every float flag in ``floats`` <= 0."""
    bad = [f"--{k} {getattr(cfg, k)}" for k in names if getattr(cfg, k) < 1]
    bad += [f"--{k} {getattr(cfg, k)}" for k in floats if not getattr(cfg, k) > 0]
    if bad:
        raise UserError(f"invalid value(s): {', '.join(bad)} (integers must be >= 1, rates > 0)")


def cli_entry(parse_config, run):
    """The ``main(argv)`` of a phase module: parse, run, one-line errors with exit 2 (shared_utils.cli_main)."""
    from shared_utils.errors import cli_main

    @cli_main
    def main(argv=None):
        return run(parse_config(argv))

    return main
