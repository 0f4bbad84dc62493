"""Input checks shared by the llm_trm CLIs: readable files, output paths, resume settings (one-line errors).

File, output-path and resume checks are ``shared_utils.runs``' (re-exported here); the two below are llm_trm's.

    python -m pytest tests/test_bad_inputs.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from shared_utils.errors import UserError
from shared_utils.runs import check_output_path, check_resume_config, load_json_file, load_torch_file

__all__ = ["check_data_path", "check_output_path", "check_resume_config", "cli_entry", "load_json_file",
           "load_torch_file", "require_positive"]


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
