"""Training configuration: one dataclass holds every default; YAML overrides it; the CLI overrides YAML.

Every key of the original ``training_configs/superrelora_160m.yaml`` is honoured (the original read only half of
them); an unknown key is an error. Numeric strings such as ``"2e-4"`` (PyYAML reads ``2e-4`` without a dot as a
string) are coerced to numbers.

    python -c "from superrelora.config import load_config; print(load_config('training_configs/superrelora_160m.yaml'))"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared_utils.errors import UserError

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = ("superrelora", "lora", "relora", "full", "as_run")
SPLITS = ("sqrt", "b_only", "reference")
SCHEDULERS = ("linear", "cosine", "constant", "jagged_cosine")


@dataclass
class OptimizerConfig:
    """AdamW settings (Trainer defaults; the original YAML listed them but nothing read them)."""

    type: str = "adamw"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class SchedulerConfig:
    """Learning-rate schedule.

    type: linear | cosine | constant | jagged_cosine (ReLoRA: cosine with a linear re-warmup after every merge).
    warmup_steps: linear warmup from 0 at the start.
    total_steps: schedule horizon in optimizer updates; None = the run's number of updates.
    min_lr_ratio: floor of the cosine schedules (jagged_cosine only; ReLoRA's default 0.1).
    restart_warmup_steps: re-warmup length after each merge (jagged_cosine only).
    """

    type: str = "linear"
    warmup_steps: int = 0
    total_steps: int | None = None
    min_lr_ratio: float = 0.1
    restart_warmup_steps: int = 5


@dataclass
class TrainConfig:
    """Everything a run needs. Field comments give the meaning; defaults are the CPU-friendly ones."""

    # model and data
    model_name: str = "smollm2-135m"  # Hub id, local HF dir, a config .json (random init) or smollm2-135m
    dataset_name: str = "embedded"  # "embedded", a local text file/dir, or a Hub dataset (e.g. wikitext)
    dataset_config: str | None = None  # Hub config name (wikitext-2-raw-v1)
    limit_train_examples: int | None = None  # keep the first N training rows
    num_eval_samples: int = 1000  # README: "1000 prompts" (first N non-empty validation rows)
    max_length: int = 64  # training sequence length (tokens)
    eval_max_length: int = 64
    eval_batch_size: int = 16
    # method
    method: str = "superrelora"  # superrelora | lora | relora | full | as_run
    use_base_model: bool = False  # original flag: train the raw model (= method "full")
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: list = field(default_factory=lambda: list(LLAMA_TARGETS))
    extra_trainable: list = field(default_factory=list)  # LoRA methods: parameter-name substrings that also train
    # in full rank (ReLoRA pre-training trains embeddings, norms and lm_head: ["embed_tokens", "norm", "lm_head"])
    merge_every: int = 100  # optimizer updates between partial merges (0 = never)
    merge_alpha: float = 0.1  # share of the adapter moved into the base weight per merge
    merge_split: str = "sqrt"  # sqrt | b_only | reference (the original's (1-a)^2 shrink)
    merge_moments: str = "consistent"  # consistent | reference | keep | reset | prune:<p>
    relora_prune: float = 0.9  # ReLoRA: magnitude-prune this share of the adapters' Adam moments
    # optimisation
    num_epochs: int = 3
    max_steps: int = -1  # > 0 overrides num_epochs
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    fp16: bool = False  # autocast fp16 (CUDA only)
    bf16: bool = False  # autocast bf16 (base weights stay fp32 so merges are not rounded away)
    # bookkeeping
    logging_steps: int = 10
    eval_steps: int = 0  # evaluate every N updates (0 = only at the end)
    save_steps: int = 0  # checkpoint every N updates (0 = only at the end)
    seed: int = 42
    output_dir: str = "results"
    use_trainer: bool = False
    resume_from_checkpoint: str | None = None
    track_merge_logits: bool = False  # record max |logit change| across each merge (2 extra forwards per merge)
    legacy_eval: bool = False  # also report the original's buggy evaluation (bug reproduction only)
    device: str = "auto"

    def __post_init__(self):
        validate(self)

    @property
    def effective_method(self) -> str:
        return "full" if self.use_base_model else self.method


_NESTED = {"optimizer": OptimizerConfig, "scheduler": SchedulerConfig}


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Cast YAML/CLI values to the type of the default (``"2e-4"`` -> 2e-4, ``"true"`` -> True)."""
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}': expected a number, got {value!r}") from None
        if isinstance(default, int):
            if num != int(num):
                raise UserError(f"config key '{key}': expected an integer, got {value!r}")
            return int(num)
        return num
    if isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list, got {value!r}")
        return list(value)
    return value


_OPTIONAL_INT = {"limit_train_examples", "total_steps"}


def _build(cls, data: dict, prefix: str = ""):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        if name in _NESTED and prefix == "":
            if not isinstance(value, dict):
                raise UserError(f"config key '{name}' must be a mapping")
            kwargs[name] = _build(_NESTED[name], value, prefix=f"{name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if default is None:
            default = 0 if name in _OPTIONAL_INT else ""
            if value is not None and name in _OPTIONAL_INT:
                kwargs[name] = _coerce(value, 0, prefix + name)
                continue
            kwargs[name] = None if value is None else str(value)
            continue
        kwargs[name] = _coerce(value, default, prefix + name)
    return cls(**kwargs)


def validate(cfg: TrainConfig) -> None:
    """One clear line for every inconsistent setting."""
    if cfg.method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.merge_split not in SPLITS:
        raise UserError(f"merge_split must be one of {', '.join(SPLITS)}, got {cfg.merge_split!r}")
    checks = [
        (cfg.lora_r >= 1, f"lora_r must be >= 1, got {cfg.lora_r}"),
        (0.0 <= cfg.merge_alpha <= 1.0, f"merge_alpha must be in [0, 1], got {cfg.merge_alpha}"),
        (cfg.merge_every >= 0, f"merge_every must be >= 0, got {cfg.merge_every}"),
        (cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}"),
        (cfg.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
        (cfg.learning_rate > 0, f"learning_rate must be > 0, got {cfg.learning_rate}"),
        (cfg.max_length >= 2 and cfg.eval_max_length >= 2, "max_length and eval_max_length must be >= 2"),
        (cfg.max_steps == -1 or cfg.max_steps > 0,
         f"max_steps must be -1 (train for num_epochs) or a positive number of updates, got {cfg.max_steps}"),
        (cfg.num_epochs >= 0, f"num_epochs must be >= 0, got {cfg.num_epochs}"),
        (cfg.max_steps > 0 or cfg.num_epochs > 0, "set max_steps > 0 or num_epochs > 0"),
        (cfg.limit_train_examples is None or cfg.limit_train_examples >= 1,
         f"limit_train_examples must be >= 1, got {cfg.limit_train_examples}"),
        (cfg.num_eval_samples >= 1, f"num_eval_samples must be >= 1, got {cfg.num_eval_samples}"),
        (cfg.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {cfg.eval_batch_size}"),
        (min(cfg.logging_steps, cfg.eval_steps, cfg.save_steps) >= 0,
         "logging_steps, eval_steps and save_steps must be >= 0"),
        (cfg.weight_decay >= 0 and cfg.max_grad_norm >= 0, "weight_decay and max_grad_norm must be >= 0"),
        (0.0 <= cfg.lora_dropout < 1.0, f"lora_dropout must be in [0, 1), got {cfg.lora_dropout}"),
        (cfg.lora_alpha > 0, f"lora_alpha must be > 0, got {cfg.lora_alpha}"),
        (cfg.scheduler.warmup_steps >= 0 and cfg.scheduler.restart_warmup_steps >= 0,
         "scheduler.warmup_steps and scheduler.restart_warmup_steps must be >= 0"),
        (cfg.scheduler.total_steps is None or cfg.scheduler.total_steps >= 1,
         f"scheduler.total_steps must be >= 1, got {cfg.scheduler.total_steps}"),
        (not (cfg.fp16 and cfg.bf16), "fp16 and bf16 are mutually exclusive"),
        (cfg.optimizer.type.lower() in ("adamw", "adamw_torch"), f"optimizer.type must be adamw, got {cfg.optimizer.type!r}"),
        (cfg.scheduler.type in SCHEDULERS, f"scheduler.type must be one of {', '.join(SCHEDULERS)}"),
        (cfg.effective_method == "full" or cfg.lora_r > 0, "lora_r must be positive"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    if cfg.effective_method == "superrelora" and cfg.merge_every > 0:
        check_merge_args(cfg.merge_alpha, cfg.merge_split)
    m = cfg.merge_moments
    if not (m in ("consistent", "reference", "keep", "reset") or m.startswith("prune:")):
        raise UserError(f"merge_moments must be consistent|reference|keep|reset|prune:<p>, got {m!r}")
    if m.startswith("prune:"):
        try:
            p = float(m.split(":", 1)[1])
        except ValueError:
            raise UserError(f"merge_moments {m!r}: prune share must be a number") from None
        if not 0.0 <= p <= 1.0:
            raise UserError(f"merge_moments {m!r}: prune share must be in [0, 1]")


def check_merge_args(alpha: float, split: str) -> None:
    """The one rule for partial merges, shared by the config and the model-level API (``partial_merge``).

    alpha = 1 with the ``sqrt`` (or the original ``reference``) split multiplies both A and B by 0: the adapter is
    dead (zero gradients for ever), the original's bug. Only ``b_only`` (B <- 0, A kept) is a full merge that trains on.
    """
    if split not in SPLITS:
        raise UserError(f"merge_split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"merge_alpha must be in [0, 1], got {alpha}")
    if alpha >= 1.0 and split != "b_only":
        raise UserError(f"merge_alpha 1.0 needs merge_split b_only ({split} would zero both A and B: a dead adapter)")


def check_output_dir(path: str | Path, flag: str = "--output_dir") -> Path:
    """An output directory that is (or lies under) an existing file is one clear error, before any work."""
    from shared_utils.runs import check_output_path

    return check_output_path(path, flag)


def config_from_dict(data: dict) -> TrainConfig:
    return _build(TrainConfig, dict(data))


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of keys to values")
    return data


def apply_override(data: dict, key: str, value: Any) -> None:
    """Set ``key`` (``a`` or ``a.b`` for the optimizer/scheduler sections) in a raw config dict."""
    if "." in key:
        head, tail = key.split(".", 1)
        if head not in _NESTED:
            raise UserError(f"unknown config key: {key}")
        data.setdefault(head, {})
        data[head][tail] = value
    else:
        data[key] = value


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """YAML (optional) + overrides (``{"merge_every": 50, "scheduler.type": "cosine"}``) -> TrainConfig."""
    data = load_yaml(path) if path else {}
    for key, value in (overrides or {}).items():
        apply_override(data, key, value)
    return config_from_dict(data)


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def cli_keys() -> list[str]:
    """Every overridable key (``scheduler.type`` style for nested sections)."""
    keys = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NESTED:
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(_NESTED[f.name])]
        else:
            keys.append(f.name)
    return keys
