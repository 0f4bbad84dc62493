"""Mid-run checkpoints of both training loops, so a killed run resumes to the same result.

``--save_steps N`` writes ``<checkpoint_dir>/trainer_state.pt`` (default ``<output_dir>_checkpoint``) every N
optimizer steps, atomically (temp file + rename: a kill during the write leaves the previous checkpoint).
It holds the trainable modules, the optimizer and scheduler states, the position in the data (epoch, micro-batch),
the loss history, the best validation state and the run's settings. ``--resume_from_checkpoint PATH`` (the
directory or the file) continues from there: the data order is a function of (seed, epoch) and the selection and
hidden states are recomputed deterministically, so the resumed run ends with the same weights as an
uninterrupted one. The checkpoint is read and its settings compared before any model is loaded: a missing,
truncated or mismatched checkpoint is one clear error.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from shared_utils.errors import UserError
from shared_utils.runs import atomic_torch_save

STATE = "trainer_state.pt"
# flags that may differ between the killed run and its resumption (where / how, not what is computed)
FREE_KEYS = {"output_dir", "save_steps", "checkpoint_dir", "resume_from_checkpoint", "num_threads", "device",
             "hidden_cache", "hidden_cache_dir"}


def checkpoint_dir(args) -> Path:
    return Path(args.checkpoint_dir or f"{args.output_dir.rstrip('/')}_checkpoint").expanduser()


def save(args, config: dict, state: dict) -> Path:
    """Atomically write ``state`` plus the run's settings ``config`` to ``<checkpoint_dir>/trainer_state.pt``."""
    return atomic_torch_save({**state, "config": config}, checkpoint_dir(args) / STATE)


def load_torch_file(path: str | Path, what: str) -> dict:
    """``torch.load`` a checkpoint file; missing / unreadable / corrupt -> one UserError (no traceback)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        data = path.read_bytes()
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(f"{what} {path} is unreadable or truncated ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} is not a training checkpoint")
    return obj


def check_resume_config(saved: dict, new: dict, keys) -> None:
    """UserError naming every key whose value differs between the checkpoint and this run."""
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs now {new.get(k)!r}" for k in keys if saved.get(k) != new.get(k)]
    if diff:
        raise UserError("checkpoint settings differ from this run (" + "; ".join(diff) + ")")


def load_for_resume(args, config: dict, mode: str) -> dict | None:
    """The checkpoint named by ``--resume_from_checkpoint`` (validated against this run's ``config``), or None."""
    if not args.resume_from_checkpoint:
        return None
    path = Path(args.resume_from_checkpoint).expanduser()
    if path.is_dir():
        path = path / STATE
    state = load_torch_file(path, "checkpoint")
    if state.get("mode") != mode or "config" not in state:
        raise UserError(f"checkpoint {path} was written by a {state.get('mode', 'different')} run, not {mode}")
    keys = sorted((set(state["config"]) | set(config)) - FREE_KEYS)
    check_resume_config(state["config"], config, keys)
    return state
