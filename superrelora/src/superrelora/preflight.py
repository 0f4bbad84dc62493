"""Checks that run before torch, transformers or peft are imported, so bad input is one line within a second.

Every check here is repeated (or implied) later where the real work happens; this module only moves the failure
in front of the 10-30 s of imports and model loading. No torch import anywhere in this file.

    python -c "from superrelora.preflight import preflight; from superrelora.config import load_config; \
preflight(load_config('training_configs/tiny_cpu.yaml'))"
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from shared_utils.errors import UserError
from superrelora.config import TrainConfig, check_output_dir, config_to_dict

RUN_FILE = "superrelora_run.json"  # config + merge log of the run; written last, so it marks a complete checkpoint
STATE_FILE = "superrelora_state.safetensors"
# Settings a resume must share with the checkpoint: anything else would silently train a different run.
RESUME_KEYS = ("method", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "extra_trainable", "merge_every", "merge_alpha",
               "merge_split", "merge_moments", "relora_prune", "batch_size", "gradient_accumulation_steps", "seed",
               "max_length", "scheduler.type")


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or one line naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable or corrupt {what}, invalid JSON ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:80]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: corrupt {what} (not a JSON object)")
    return data


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (one with its run record, written last; a kill mid-save leaves none)."""
    found = [p for p in Path(output_dir).glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / RUN_FILE).is_file()]
    found.sort(key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


def resume_dir(cfg: TrainConfig) -> Path | None:
    """The checkpoint directory ``resume_from_checkpoint`` names (``latest`` = newest complete one), or None."""
    r = cfg.resume_from_checkpoint
    if not r:
        return None
    path = latest_checkpoint(cfg.output_dir) if r == "latest" else Path(r)
    if path is None or not path.is_dir():
        where = f" in {cfg.output_dir}" if r == "latest" else ""
        raise UserError(f"resume_from_checkpoint={r}: no such checkpoint directory{where}")
    return path


def read_run_info(directory: str | Path) -> dict:
    """``superrelora_run.json`` of a checkpoint; {} when absent (older checkpoints: the caller falls back)."""
    path = Path(directory) / RUN_FILE
    return read_json(path, "run record") if path.is_file() else {}


def _resume_view(config: dict) -> dict:
    """The RESUME_KEYS of a config dict (``scheduler.type`` style for nested keys; method = effective method)."""
    defaults = config_to_dict(TrainConfig())  # a key a checkpoint predates has its default value
    out = {}
    for key in RESUME_KEYS:
        head, _, tail = key.partition(".")
        value = config.get(head, defaults.get(head))
        if tail:
            value = value.get(tail) if isinstance(value, dict) else None
        out[key] = value
    if config.get("use_base_model"):
        out["method"] = "full"
    return out


def check_resume_config(saved: dict, new: dict) -> None:
    """UserError naming every differing RESUME_KEY with both values (``shared_utils.runs.check_resume_config``)."""
    from shared_utils.runs import check_resume_config as check

    check(_resume_view(saved), _resume_view(new), RESUME_KEYS)


def check_safetensors_file(path: Path) -> None:
    """Header and size of a safetensors file (truncation shows as data ending past the end of the file)."""
    try:
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        end = max([v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"], default=0)
        ok = len(raw) >= 8 + n + end
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError):
        ok = False
    if not ok:
        raise UserError(f"{path}: corrupt or truncated safetensors file; resume from an earlier checkpoint")


def check_torch_file(path: Path) -> None:
    """A torch.save file is a zip archive: a truncated one has no readable central directory."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        bad = path.name
    if bad is not None:
        raise UserError(f"{path}: corrupt or truncated checkpoint file; resume from an earlier checkpoint")


def check_checkpoint(directory: Path, config: dict) -> dict:
    """Its config matches ``config`` (RESUME_KEYS), every file parses; returns its run record ({} if none)."""
    info = read_run_info(directory)
    saved = info.get("config")
    if saved is None and (directory.parent / "config.json").is_file():  # older checkpoints: the run's config.json
        saved = read_json(directory.parent / "config.json", "run config")
    if saved is not None:
        check_resume_config(saved, config)
    if not (directory / STATE_FILE).is_file():
        raise UserError(f"{directory}: no {STATE_FILE} (incomplete checkpoint, or not written by superrelora)")
    for path in sorted(directory.iterdir()):
        if path.suffix == ".json":
            read_json(path, "checkpoint file")
        elif path.suffix == ".safetensors":
            check_safetensors_file(path)
        elif path.suffix in (".pt", ".pth", ".bin"):
            check_torch_file(path)
    return info


def check_model_name(name: str) -> None:
    """A config .json must exist and parse; a Hub id needs the Hub (or the HF cache)."""
    from shared_utils.models import is_embedded, resolve_model_path

    if str(name).endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"model config {path} does not exist")
        read_json(path, "model config")
    elif not is_embedded(name):
        resolve_model_path(name, flag="--model_name")


def check_dataset(cfg: TrainConfig) -> None:
    """The text source exists and has training rows beyond the held-out ones."""
    from shared_utils.data import load_text_corpus, load_text_lines
    from shared_utils.hub import require_hub

    name = cfg.dataset_name
    if name == "embedded":
        return
    path = Path(name).expanduser()
    if path.is_file():
        n = len(load_text_lines(path))
        if n <= cfg.num_eval_samples:
            raise UserError(f"{path}: {n} non-empty lines, need more than num_eval_samples={cfg.num_eval_samples} "
                            "(the first num_eval_samples lines are held out for validation)")
    elif path.is_dir() or name.startswith((".", "/", "~")):
        if not load_text_corpus(str(path), "train"):
            raise UserError(f"{path}: no non-empty training lines")
    else:
        require_hub(name, "dataset", alternative="--dataset_name embedded or a local text file "
                    "(../../shared/data/wikitext2/raw/wiki.test.raw)")


def preflight(cfg: TrainConfig) -> dict:
    """Everything a training run can reject without torch; returns the resume checkpoint's run record."""
    check_output_dir(cfg.output_dir)
    if cfg.fp16 and cfg.device == "cpu":
        raise UserError("fp16 needs CUDA; on CPU use bf16: true or fp32")
    check_model_name(cfg.model_name)
    check_dataset(cfg)
    resume = resume_dir(cfg)
    return check_checkpoint(resume, config_to_dict(cfg)) if resume is not None else {}
