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

from pathlib import Path

from shared_utils.errors import UserError
from shared_utils.runs import atomic_torch_save, check_resume_config, load_torch_file

STATE = "trainer_state.pt"
# flags that may differ between the killed run and its resumption (where / how, not what is computed)
FREE_KEYS = {"output_dir", "save_steps", "checkpoint_dir", "resume_from_checkpoint", "num_threads", "device",
             "hidden_cache", "hidden_cache_dir"}


def checkpoint_dir(args) -> Path:
    return Path(args.checkpoint_dir or f"{args.output_dir.rstrip('/')}_checkpoint").expanduser()


def save(args, config: dict, state: dict) -> Path:
    """Atomically write ``state`` plus the run's settings ``config`` to ``<checkpoint_dir>/trainer_state.pt``."""
    return atomic_torch_save({**state, "config": config}, checkpoint_dir(args) / STATE)


def load_for_resume(args, config: dict, mode: str) -> dict | None:
    """The checkpoint named by ``--resume_from_checkpoint`` (validated against this run's ``config``), or None."""
    if not args.resume_from_checkpoint:
        return None
    path = Path(args.resume_from_checkpoint).expanduser()
    if path.is_dir():
        path = path / STATE
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is not a training checkpoint")
    if state.get("mode") != mode or "config" not in state:
        raise UserError(f"checkpoint {path} was written by a {state.get('mode', 'different')} run, not {mode}")
    keys = sorted((set(state["config"]) | set(config)) - FREE_KEYS)
    check_resume_config(state["config"], config, keys)
    return state
