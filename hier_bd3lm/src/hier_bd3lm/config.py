"""Configuration: dataclasses + OmegaConf, Hydra-style `key=value` overrides, strict validation.

`python main.py mode=train model=tiny training.max_steps=1000 training.hierarchical.enabled=true ...`
Group selectors `model=NAME`, `algo=NAME`, `data=NAME` load configs/<group>/NAME.yaml; dotted keys override
fields; unknown keys are rejected; README aliases map to the bd3lms keys (training.max_steps ->
trainer.max_steps, training.batch_size -> loader.batch_size, training.learning_rate -> optim.lr,
training.block_size -> block_size).

python -m pytest tests/test_config.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hier_bd3lm.layout import Layout
from shared_utils.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
GROUPS = ("model", "algo", "data")
ALIASES = {
    "training.max_steps": "trainer.max_steps",
    "training.batch_size": "loader.batch_size",
    "training.learning_rate": "optim.lr",
    "training.block_size": "block_size",
    "training.warmup_steps": "lr_scheduler.num_warmup_steps",
}
MODES = ("train", "ppl_eval", "sample_eval")


@dataclass
class ModelCfg:
    name: str = "micro"
    hidden_size: int = 64
    cond_dim: int = 16
    n_blocks: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    length: int | None = None  # derived from the hierarchical lengths when null
    attn_backend: str = "sdpa"
    adaln: bool = False  # AR only: adaLN is always on for diffusion (bd3lms)


@dataclass
class AlgoCfg:
    name: str = "bd3lm"  # bd3lm | ar | mdlm (= bd3lm with one block over the generated region)
    backbone: str = "dit"
    T: int = 0  # steps per block for the ddpm_cache sampler; 0 -> first-hitting
    time_conditioning: bool = False
    var_min: bool = False
    clip_search_widths: list[float] = field(default_factory=list)
    clip_search_delta: float = 0.05
    fix_clipping: bool = False
    cross_attn: bool = True
    ignore_bos: bool = True


@dataclass
class HierCfg:
    enabled: bool = True
    question_len: int = 128
    plan_len: int = 128
    exec_len: int = 256
    total_len: int = 512
    exec_sees_noisy_plan: bool = False  # the fork's rule 7 (breaks exact KV caching)
    mode: str = "full"


@dataclass
class TrainingCfg:
    ema: float = 0.9999
    antithetic_sampling: bool = True
    sampling_eps: float = 1e-3
    sampling_eps_min: float = 1e-3
    sampling_eps_max: float = 1.0
    resample: bool = False
    pad_in_loss: bool = True
    from_pretrained: str | None = None
    hierarchical: HierCfg = field(default_factory=HierCfg)


@dataclass
class TrainerCfg:
    max_steps: int = 1000
    val_check_interval: int = 200
    log_every_n_steps: int = 20
    accumulate_grad_batches: int = 1
    gradient_clip_val: float = 1.0
    limit_val_batches: int = 8
    device: str = "auto"
    num_threads: int = 1  # torch threads; 1 is far faster for these small models on a shared CPU (0 = torch default)


@dataclass
class LoaderCfg:
    batch_size: int = 16
    eval_batch_size: int = 16
    num_workers: int = 0


@dataclass
class OptimCfg:
    lr: float = 3e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class SchedCfg:
    num_warmup_steps: int = 100


@dataclass
class NoiseCfg:
    type: str = "loglinear"
    eps: float = 1e-3


@dataclass
class DataCfg:
    name: str = "gsm8k"
    train_path: str | None = None
    test_path: str | None = None
    gsm8k_path: str | None = None  # official GSM8K jsonl dir: rule plans are built on the fly when no train_path
    tokenizer: str = "smollm2-135m"  # or char, gpt2, a local tokenizer dir
    max_vocab: int | None = None  # keep only the most frequent compacted ids (rest -> UNK); null = all seen
    exec_include_answer: bool = True
    limit_train: int | None = None
    limit_valid: int | None = 64
    valid_fraction: float = 0.05  # held out of the train file when no test_path


@dataclass
class SamplingCfg:
    nucleus_p: float = 1.0
    kv_cache: bool = True
    num_sample_batches: int = 1
    hierarchical_mode: str = "full"
    first_hitting: bool = True
    sampler: str = "first_hitting"  # or ddpm_cache (uses algo.T)


@dataclass
class EvalCfg:
    checkpoint_path: str | None = None
    mc_samples: int = 4  # Monte Carlo time draws per validation example (NELBO variance)
    output_path: str | None = None


@dataclass
class CkptCfg:
    save_dir: str = "outputs/run"
    resume_from_ckpt: bool = True


@dataclass
class Config:
    mode: str = "train"
    seed: int = 1
    block_size: int = 16
    model: ModelCfg = field(default_factory=ModelCfg)
    algo: AlgoCfg = field(default_factory=AlgoCfg)
    noise: NoiseCfg = field(default_factory=NoiseCfg)
    training: TrainingCfg = field(default_factory=TrainingCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    loader: LoaderCfg = field(default_factory=LoaderCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    lr_scheduler: SchedCfg = field(default_factory=SchedCfg)
    data: DataCfg = field(default_factory=DataCfg)
    sampling: SamplingCfg = field(default_factory=SamplingCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    checkpointing: CkptCfg = field(default_factory=CkptCfg)


def _group_file(group: str, name: str) -> Path:
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.is_file():
        avail = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        raise UserError(f"unknown {group} config '{name}' (available: {', '.join(avail)})")
    return path


def parse_overrides(args: list[str], base: str | None = "config") -> Config:
    """Build a validated Config from `key=value` strings (Hydra-style) on top of configs/config.yaml."""
    try:
        cfg = OmegaConf.structured(Config)
        if base:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(CONFIG_DIR / f"{base}.yaml"))
        dotted = []
        for arg in args:  # group selections first, then dotted keys (as Hydra does)
            if "=" not in arg:
                raise UserError(f"override '{arg}' is not of the form key=value")
            key, value = arg.split("=", 1)
            key = ALIASES.get(key.lstrip("+"), key.lstrip("+"))
            if key in GROUPS:
                cfg = OmegaConf.merge(cfg, {key: OmegaConf.load(_group_file(key, value))})
            else:
                dotted.append(f"{key}={value}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotted))
        out: Config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise UserError(f"bad config: {msg}") from None
    validate(out)
    return out


def layout_of(cfg: Config) -> Layout:
    h = cfg.training.hierarchical
    plan = h.plan_len if h.enabled else 0
    return Layout(h.question_len, plan, h.exec_len, cfg.block_size)


def validate(cfg: Config) -> None:
    h = cfg.training.hierarchical
    if cfg.mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got '{cfg.mode}'")
    if cfg.algo.name not in ("bd3lm", "ar", "mdlm"):
        raise UserError(f"algo.name must be bd3lm, ar or mdlm, got '{cfg.algo.name}'")
    if min(h.question_len, h.exec_len) < 1 or h.plan_len < 0:
        raise UserError("question_len and exec_len must be >= 1, plan_len >= 0")
    if h.question_len + h.plan_len + h.exec_len != h.total_len:
        raise UserError(f"lengths do not add up: question_len {h.question_len} + plan_len {h.plan_len} + "
                        f"exec_len {h.exec_len} != total_len {h.total_len}")
    if cfg.algo.name == "mdlm" and h.enabled and h.plan_len:
        raise UserError("algo=mdlm makes the generated region one block, so the plan would attend to the execution; "
                        "use algo=mdlm with training.hierarchical.enabled=false, or algo=bd3lm")
    if cfg.algo.name == "mdlm":
        cfg.block_size = (h.plan_len if h.enabled else 0) + h.exec_len
    if cfg.block_size < 1:
        raise UserError(f"block_size must be >= 1, got {cfg.block_size}")
    segs = [("plan_len", h.plan_len)] if h.enabled and cfg.algo.name != "mdlm" else []  # MDLM: one block
    for name, n in segs + ([("exec_len", h.exec_len)] if cfg.algo.name != "mdlm" else []):
        if n % cfg.block_size:
            raise UserError(f"block_size {cfg.block_size} does not divide {name} {n}")
    length = layout_of(cfg).total_len
    if cfg.model.length is not None and cfg.model.length != length:
        raise UserError(f"model.length {cfg.model.length} != layout length {length} "
                        f"({'Q+P+E' if h.enabled else 'Flat Q+E'})")
    cfg.model.length = length
    if cfg.model.attn_backend not in ("sdpa", "flex"):
        raise UserError(f"model.attn_backend must be sdpa or flex, got '{cfg.model.attn_backend}'")
    if cfg.model.attn_backend == "flex":
        raise UserError("model.attn_backend=flex is not implemented here (dense masks only); use model.attn_backend=sdpa")
    if cfg.model.hidden_size % cfg.model.n_heads:
        raise UserError(f"model.hidden_size {cfg.model.hidden_size} not divisible by model.n_heads {cfg.model.n_heads}")
    if not 0 < cfg.sampling.nucleus_p <= 1:
        raise UserError(f"sampling.nucleus_p must be in (0, 1], got {cfg.sampling.nucleus_p}")
    if cfg.sampling.hierarchical_mode not in ("full", "plan_only", "exec_only"):
        raise UserError("sampling.hierarchical_mode must be full, plan_only or exec_only")
    if cfg.sampling.hierarchical_mode != "full" and not h.enabled:
        raise UserError("sampling.hierarchical_mode plan_only/exec_only needs training.hierarchical.enabled=true")
    if cfg.sampling.sampler not in ("first_hitting", "ddpm_cache"):
        raise UserError(f"sampling.sampler must be first_hitting or ddpm_cache, got '{cfg.sampling.sampler}'")
    if cfg.sampling.sampler == "ddpm_cache" and cfg.algo.T < 1:
        raise UserError("sampling.sampler=ddpm_cache needs algo.T >= 1 (steps per block)")
    tr = cfg.training
    if not 0 <= tr.sampling_eps_min < tr.sampling_eps_max <= 1 and not (tr.sampling_eps_min == tr.sampling_eps_max == 1):
        raise UserError("need 0 <= training.sampling_eps_min < sampling_eps_max <= 1")
    if cfg.noise.type not in ("loglinear", "square", "square_root", "log", "cosine"):
        raise UserError(f"unknown noise.type '{cfg.noise.type}'")
    for name in ("max_steps", "val_check_interval", "log_every_n_steps", "accumulate_grad_batches"):
        if getattr(cfg.trainer, name) < 1:
            raise UserError(f"trainer.{name} must be >= 1")
    if cfg.loader.batch_size < 1 or cfg.loader.eval_batch_size < 1:
        raise UserError("loader.batch_size and loader.eval_batch_size must be >= 1")
    if not cfg.optim.lr > 0:
        raise UserError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.optim.weight_decay < 0 or not 0 <= cfg.training.ema < 1:
        raise UserError("optim.weight_decay must be >= 0 and training.ema in [0, 1)")
    if cfg.lr_scheduler.num_warmup_steps < 0 or cfg.trainer.limit_val_batches < 1:
        raise UserError("lr_scheduler.num_warmup_steps must be >= 0 and trainer.limit_val_batches >= 1")
    if cfg.trainer.num_threads < 0:
        raise UserError(f"trainer.num_threads must be >= 0, got {cfg.trainer.num_threads}")
    if cfg.data.max_vocab is not None and cfg.data.max_vocab < 0:
        raise UserError(f"data.max_vocab must be >= 0, got {cfg.data.max_vocab}")
    for name in ("limit_train", "limit_valid"):
        v = getattr(cfg.data, name)
        if v is not None and v < 1:
            raise UserError(f"data.{name} must be >= 1 (or null), got {v}")
    if cfg.eval.mc_samples < 1:
        raise UserError(f"eval.mc_samples must be >= 1, got {cfg.eval.mc_samples}")


def config_from_dict(d: dict) -> Config:
    """A validated Config from a saved dict (checkpoints)."""
    try:
        out = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), d))
    except OmegaConfBaseException as exc:
        raise UserError(f"bad saved config: {str(exc).splitlines()[0]}") from None
    validate(out)
    return out


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))
