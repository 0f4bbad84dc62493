"""Phase 1: pretrain the DimensionCompressor on frozen-LLM hidden states (stage 1a prose, stage 1b thinking).

    python -m src.train.phase1_compressor --stage 1a            # the original command (from llm_trm/)
    python -m llm_trm.phase1 --stage 1a --d_compressed 48       # the same code, as a package module
    python -m llm_trm.phase1 --stage 1b                         # starts from {output_dir}/stage1a_best.pt
    python -m llm_trm.phase1 --sweep --sweep_d_values 12 24 48  # one d{D'}/ folder per value
    accelerate launch -m llm_trm.phase1 --stage 1a              # multi-GPU

Differences from the original (see README): hidden states are cached once per model + data (``--online``
re-runs the LLM per batch as the original did); padding is masked out of loss and metrics
(``--include_padding`` restores the original); early stopping and best checkpoints use a 10% held-out split
(``--select_on train`` restores the original); warmup + cosine LR over the real number of optimizer steps;
checkpoints hold plain dicts (no pickled dataclass).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from llm_trm.compression import METRIC_NAMES, DimensionCompressor, compute_metrics, masked_mse, strip_compile_prefix
from llm_trm.llm import Tracker, load_frozen_llm, model_hidden_size, pick_run_device
from shared_utils.errors import NonFiniteLossError, UserError, cli_main
from shared_utils.runs import RunDir, atomic_torch_save, seed_everything

DEFAULT_MODEL = "smollm2-135m"  # embedded SmolLM2-135M-Instruct (D=576); the original: HuggingFaceTB/SmolLM3-3B


@dataclass
class Phase1Config:
    """Every flag of the original README tables (same defaults) plus the ones this port adds."""

    stage: str = "1a"  # 1a: prose (identity reconstruction); 1b: thinking sequences, from stage1a_best.pt
    d_compressed: int = 256  # compressed width D'
    batch_size: int = 8  # sequences per micro-batch (per GPU)
    num_epochs: int = 10  # maximum epochs
    learning_rate: float = 1e-3
    num_samples: int = 50000  # text rows taken from the source (90% train / 10% held out)
    max_seq_length: int = 512
    output_dir: str = "./checkpoints/phase1"
    seed: int = 42
    early_stopping: bool = True
    early_stopping_patience: int = 3
    torch_compile: bool = True  # applied on CUDA only (CPU compile gains nothing for one matmul)
    use_wandb: bool = True  # needs `pip install wandb`; without it the run logs locally only
    wandb_project: str = "llm-trm-phase1"
    wandb_run_name: str | None = None  # default d{D'}_bs{bs}_lr{lr}_{stage}
    sweep: bool = False
    sweep_d_values: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    # --- added by this port ---
    model_name: str = DEFAULT_MODEL  # Hub id, local HF dir, or the embedded default
    data_path: str | None = None  # stage-1a text file/dir (e.g. ../../shared/data/wikitext2); None: embedded
    device: str = "auto"
    compressor_checkpoint: str | None = None  # stage 1b init; default {output_dir}/stage1a_best.pt
    weight_decay: float = 0.01
    gradient_accumulation_steps: int = 4
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.1
    min_delta: float = 1e-6
    select_on: str = "heldout"  # heldout | train (the original judged early stopping on training loss)
    include_padding: bool = False  # True: padding rows in loss/metrics, as the original
    online: bool = False  # True: re-run the LLM on every batch of every epoch, as the original
    cache_dir: str = "./cache/hidden"
    heldout_fraction: float = 0.1
    log_steps: int = 10
    stage1b_from: str = "stage1a"  # stage1a: continue from the stage-1a checkpoint (original) | svd: SVD of the 1b data
    init: str = "svd"  # svd: top-D' right singular vectors of the train tokens (Eckart-Young); random: orthogonal
    checkpoint_every: int = 50  # optimizer steps between mid-run resume checkpoints (stage{1a,1b}_resume.pt)
    resume: bool = False  # continue from {output_dir}/stage{stage}_resume.pt
    step_delay: float = 0.0  # seconds slept per optimizer step (hidden; lets tests kill a run mid-way)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phase1_compressor", description=__doc__.split("\n")[0])
    c = Phase1Config()
    p.add_argument("--stage", choices=["1a", "1b"], default=c.stage)
    for name in ("d_compressed", "batch_size", "num_epochs", "num_samples", "max_seq_length", "seed",
                 "early_stopping_patience", "gradient_accumulation_steps", "log_steps", "checkpoint_every"):
        p.add_argument(f"--{name}", type=int, default=getattr(c, name))
    for name in ("learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio", "min_delta", "heldout_fraction"):
        p.add_argument(f"--{name}", type=float, default=getattr(c, name))
    for name in ("output_dir", "model_name", "device", "cache_dir", "wandb_project"):
        p.add_argument(f"--{name}", default=getattr(c, name))
    p.add_argument("--data_path", default=None)
    p.add_argument("--wandb_run_name", default=None)
    p.add_argument("--compressor_checkpoint", default=None)
    p.add_argument("--select_on", choices=["heldout", "train"], default=c.select_on)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--sweep_d_values", type=int, nargs="+", default=c.sweep_d_values)
    _on_off(p, "early_stopping", "--early_stopping", "--no_early_stopping", c.early_stopping)
    _on_off(p, "torch_compile", "--torch_compile", "--no_torch_compile", c.torch_compile)
    _on_off(p, "use_wandb", "--use_wandb", "--no_wandb", c.use_wandb)
    p.add_argument("--include_padding", action="store_true")
    p.add_argument("--online", action="store_true")
    p.add_argument("--init", choices=["svd", "random"], default=c.init,
                   help="svd (default): start at the truncated-SVD optimum of the train tokens; random: the "
                        "original's orthogonal random init")
    p.add_argument("--stage1b_from", choices=["stage1a", "svd"], default=c.stage1b_from,
                   help="stage 1b start: the stage-1a checkpoint (original) or the SVD optimum of the thinking data")
    p.add_argument("--resume", action="store_true", help="continue from {output_dir}/stage{stage}_resume.pt")
    p.add_argument("--step_delay", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def _on_off(p, dest, on, off, default):
    g = p.add_mutually_exclusive_group()
    g.add_argument(on, dest=dest, action="store_true")
    g.add_argument(off, dest=dest, action="store_false")
    p.set_defaults(**{dest: default})


def parse_config(argv: list[str] | None = None) -> Phase1Config:
    cfg = Phase1Config(**vars(build_parser().parse_args(argv)))
    validate(cfg)
    return cfg


def validate(cfg: Phase1Config) -> None:
    ints = {k: getattr(cfg, k) for k in ("d_compressed", "batch_size", "num_epochs", "num_samples",
                                          "max_seq_length", "early_stopping_patience",
                                          "gradient_accumulation_steps", "log_steps", "checkpoint_every")}
    bad = [f"--{k} {v}" for k, v in ints.items() if v < 1]
    bad += [f"--sweep_d_values {v}" for v in cfg.sweep_d_values if v < 1]
    if cfg.learning_rate <= 0:
        bad.append(f"--learning_rate {cfg.learning_rate}")
    if not 0 < cfg.heldout_fraction < 1:
        bad.append(f"--heldout_fraction {cfg.heldout_fraction}")
    if bad:
        raise UserError(f"invalid value(s): {', '.join(bad)} (must be positive; heldout_fraction in (0,1))")


class EarlyStopping:
    """Stop after ``patience`` epochs without ``value < best - min_delta`` (the original's semantics)."""

    def __init__(self, patience: int = 3, min_delta: float = 1e-6):
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.counter = 0

    def step(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.counter = value, 0
        else:
            self.counter += 1
        return self.counter >= self.patience


def warmup_cosine(optimizer, total_steps: int, warmup_ratio: float):
    """Linear warmup then cosine to 0 over the real number of optimizer steps (the original had no warmup
    and a T_max that did not match the accumulated step count)."""
    warm = max(1, int(round(total_steps * warmup_ratio))) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def checkpoint_name(stage: str) -> str:
    return f"stage{stage}_best.pt"


def load_compressor_state(path: str | Path, d_model: int, d_compressed: int) -> dict:
    """State dict of a phase-1 checkpoint, compile prefix stripped, shapes checked (one-line errors)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"compressor checkpoint {path} not found (run stage 1a first, or pass "
                        "--compressor_checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = strip_compile_prefix(ckpt["compressor"])
        w = state["compress.weight"]
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise UserError(f"{path} is not a phase-1 compressor checkpoint ({type(exc).__name__}: {exc})") from None
    if tuple(w.shape) != (d_compressed, d_model):
        raise UserError(f"{path} holds a {w.shape[1]}->{w.shape[0]} compressor, expected {d_model}->{d_compressed}")
    return state


def load_compressor(path: str | Path) -> DimensionCompressor:
    """A :class:`DimensionCompressor` restored from a phase-1 checkpoint (shape read from the file)."""
    try:
        w = strip_compile_prefix(torch.load(path, map_location="cpu", weights_only=True)["compressor"])
        d_c, d = w["compress.weight"].shape
    except FileNotFoundError:
        raise UserError(f"compressor checkpoint {path} not found (run phase 1 first)") from None
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path} is not a phase-1 compressor checkpoint ({exc})") from None
    comp = DimensionCompressor(d, d_c)
    comp.load_state_dict(w)
    return comp.eval()


def _epoch_means(rows: list[dict]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


class EpochSampler(torch.utils.data.Sampler):
    """A fresh permutation per epoch that depends only on (seed, epoch): a resumed run replays the same order.

    The method is deliberately not called ``set_epoch``: accelerate's prepared loader calls ``set_epoch`` with
    its own iteration counter, which restarts at 0 in a resumed process.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def resume_name(stage: str) -> str:
    return f"stage{stage}_resume.pt"


RESUME_KEYS = ("stage", "d_compressed", "batch_size", "num_epochs", "learning_rate", "num_samples", "max_seq_length",
               "seed", "model_name", "data_path", "weight_decay", "gradient_accumulation_steps", "max_grad_norm",
               "warmup_ratio", "select_on", "include_padding", "heldout_fraction", "init", "stage1b_from",
               "early_stopping", "early_stopping_patience", "min_delta")


def _resume_cfg(cfg: Phase1Config, d_compressed: int) -> dict:
    return {**{k: getattr(cfg, k) for k in RESUME_KEYS}, "d_compressed": d_compressed}


def load_resume(path: Path, cfg: Phase1Config, d_compressed: int) -> dict | None:
    """The mid-run state of ``--resume`` (None when absent); refuses a file made with other settings."""
    if not path.exists():
        return None
    from llm_trm.checks import check_resume_config, load_torch_file

    ck = load_torch_file(path, "phase-1 resume checkpoint")
    if not isinstance(ck, dict) or "compressor" not in ck or "config" not in ck:
        raise UserError(f"{path} is not a phase-1 resume checkpoint; delete it or use another --output_dir")
    check_resume_config(ck["config"], _resume_cfg(cfg, d_compressed), RESUME_KEYS)
    return ck


def svd_init_(comp: DimensionCompressor, rows: torch.Tensor) -> None:
    """W <- V_k^T, the top-D' right singular vectors of the uncentered train tokens [N, D]: the exact MSE optimum
    of x -> W^T W x (Eckart-Young), so training starts at the ceiling instead of at a random projection."""
    from llm_trm.compression import svd_reference

    basis = svd_reference(rows, [comp.d_compressed])[comp.d_compressed]["basis"]  # [D, k]
    with torch.no_grad():
        comp.compress.weight.copy_(basis.T)


def _init_rows(data: dict, online_fn, limit: int = 256) -> torch.Tensor:
    train = data["train"]
    if online_fn is not None:  # online: the states of the first ``limit`` train texts
        train = online_fn(list(train[:limit]))
    return train["hidden"][train["mask"].bool()].float()


def train_compressor(cfg: Phase1Config, data: dict, d_model: int, d_compressed: int, out_dir: Path,
                     tracker: Tracker, online_fn=None) -> dict:
    """Train one compressor; returns the best (selection) metrics and bookkeeping.

    Every ``checkpoint_every`` optimizer steps the whole loop state (weights, optimizer, scheduler, epoch,
    batch position, partial epoch metrics, early-stopping state) goes to ``stage{stage}_resume.pt`` atomically;
    with ``--resume`` a killed run continues from there to the same final weights.

    Args:
        data: {"train": {"hidden","mask"} or list of texts (online), "heldout": {"hidden","mask"}}.
        online_fn: texts -> {"hidden","mask"}; set with ``--online`` (LLM forward per batch).
    """
    from accelerate import Accelerator

    if d_compressed > d_model:
        raise UserError(f"--d_compressed {d_compressed} is larger than the model's hidden size {d_model}")
    resume_path = out_dir / resume_name(cfg.stage)
    state = load_resume(resume_path, cfg, d_compressed) if cfg.resume else None
    seed_everything(cfg.seed)
    acc = Accelerator(cpu=not torch.cuda.is_available() or cfg.device == "cpu",
                      gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                      mixed_precision="bf16" if torch.cuda.is_available() and cfg.device != "cpu" else "no")
    comp = DimensionCompressor(d_model, d_compressed)
    if cfg.stage == "1b" and cfg.stage1b_from == "stage1a":
        init = cfg.compressor_checkpoint or out_dir / checkpoint_name("1a")
        comp.load_state_dict(load_compressor_state(init, d_model, d_compressed))
    elif (cfg.init == "svd" or cfg.stage == "1b") and state is None:
        svd_init_(comp, _init_rows(data, online_fn))
    train = data["train"]
    ds = TensorDataset(train["hidden"], train["mask"]) if online_fn is None else _TextDataset(train)
    sampler = EpochSampler(len(ds), cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler,
                        collate_fn=None if online_fn is None else list)
    opt = torch.optim.AdamW(comp.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    sched = warmup_cosine(opt, steps_per_epoch * cfg.num_epochs, cfg.warmup_ratio)
    stopper = EarlyStopping(cfg.early_stopping_patience, cfg.min_delta)
    best = {"loss": math.inf}
    global_step, start_epoch, skip, rows = 0, 0, 0, []
    if state is not None:
        comp.load_state_dict(state["compressor"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        stopper.best, stopper.counter = state["stopper"]
        best, global_step, rows = state["best"], state["global_step"], state["rows"]
        start_epoch, skip = state["epoch"], state["batch"]
    model, opt, loader = acc.prepare(RoundTrip(comp), opt, loader)
    if cfg.torch_compile and acc.device.type == "cuda":
        try:
            model = torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - compile is an optimisation; fall back to eager
            print(f"torch.compile failed ({exc}); running eager", file=sys.stderr)
    run = RunDir(out_dir)
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.num_epochs):
        model.train()
        sampler.use_epoch(epoch)
        if epoch > start_epoch:
            skip, rows = 0, []
        for i, batch in enumerate(loader):
            if i < skip:  # resumed mid-epoch: these batches were already trained on
                continue
            acc.step = i  # accumulation phase = batch position (equal to an uninterrupted run after a resume)
            x, mask = _batch(batch, online_fn, acc.device)
            loss_mask = None if cfg.include_padding else mask
            with acc.accumulate(model):
                x_hat = model(x)
                loss = masked_mse(x_hat, x, loss_mask)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"non-finite loss at epoch {epoch} step {global_step}; "
                                             f"last good checkpoint kept in {out_dir}")
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                if acc.sync_gradients:
                    sched.step()
                    global_step += 1
                opt.zero_grad()
            rows.append({"loss": loss.item(), **compute_metrics(x, x_hat.detach(), loss_mask)})
            if acc.sync_gradients:
                if global_step % cfg.log_steps == 0:
                    avg = _epoch_means(rows)
                    tracker.log({**{f"train/{k}": avg[k] for k in ("loss", *METRIC_NAMES)},
                                 "train/learning_rate": sched.get_last_lr()[0], "train/epoch": epoch,
                                 "train/global_step": global_step}, step=global_step)
                if global_step % cfg.checkpoint_every == 0 and i + 1 < len(loader):
                    _save_resume(acc, comp, opt, sched, stopper, best, global_step, rows, epoch, i + 1, cfg,
                                 d_compressed, resume_path)
                if cfg.step_delay:
                    time.sleep(cfg.step_delay)
        train_avg = _epoch_means(rows)
        held = evaluate_compressor(comp, data["heldout"], cfg.include_padding)
        select = held["mse"] if cfg.select_on == "heldout" else train_avg["loss"]
        if select < best["loss"]:  # strict improvement, as the original
            best = {"loss": select, "epoch": epoch, "heldout": held, "train": train_avg}
            _save_best(acc, comp, cfg, out_dir, d_model, d_compressed, best, tracker)
        tracker.log({"epoch/loss": train_avg["loss"], "epoch/cosine_similarity": train_avg["cosine_similarity"],
                     "epoch/relative_error": train_avg["relative_error"], "epoch/best_loss": best["loss"],
                     **{f"eval/{k}": held[k] for k in METRIC_NAMES}}, step=global_step)
        run.log(epoch, **{f"train_{k}": v for k, v in train_avg.items()}, **{f"heldout_{k}": v for k, v in held.items()})
        stop = cfg.early_stopping and stopper.step(select)
        # epoch boundary: the next epoch starts from batch 0 (or the run is over)
        _save_resume(acc, comp, opt, sched, stopper, best, global_step, [], epoch + 1, 0, cfg, d_compressed,
                     resume_path, done=stop or epoch + 1 == cfg.num_epochs)
        if stop:
            break
    return {**best, "epochs_run": epoch + 1, "optimizer_steps": global_step,
            "checkpoint": str(out_dir / checkpoint_name(cfg.stage))}


def _save_resume(acc, comp, opt, sched, stopper, best, global_step, rows, epoch, batch, cfg, d_compressed, path,
                 done: bool = False) -> None:
    if not acc.is_main_process:
        return
    atomic_torch_save({"compressor": strip_compile_prefix(comp.state_dict()), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "stopper": [stopper.best, stopper.counter], "best": best,
                       "global_step": global_step, "rows": rows, "epoch": epoch, "batch": batch, "done": done,
                       "config": _resume_cfg(cfg, d_compressed)}, path)


class RoundTrip(torch.nn.Module):
    """x -> decompress(compress(x)) as one forward, so DDP / torch.compile wrap the whole round trip."""

    def __init__(self, comp: DimensionCompressor):
        super().__init__()
        self.comp = comp

    def forward(self, x):
        return self.comp.reconstruct(x)


class _TextDataset(torch.utils.data.Dataset):
    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]


def _batch(batch, online_fn, device):
    if online_fn is not None:  # the original's path: LLM forward on every batch
        out = online_fn(batch)
        return out["hidden"].to(device), out["mask"].to(device)
    x, mask = batch
    return x.to(device).float(), mask.to(device)


@torch.no_grad()
def evaluate_compressor(comp: DimensionCompressor, split: dict, include_padding: bool = False) -> dict:
    """The four metrics over all held-out rows at once (exact, not a mean of batch means)."""
    comp.eval()
    x = split["hidden"].float().to(comp.compress.weight.device)
    mask = None if include_padding else split["mask"].to(x.device)
    return compute_metrics(x, comp.reconstruct(x), mask)


def _save_best(acc, comp, cfg, out_dir, d_model, d_compressed, best, tracker) -> None:
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return
    path = out_dir / checkpoint_name(cfg.stage)
    state = strip_compile_prefix(comp.state_dict())
    atomic_torch_save({"compressor": state, "config": dataclasses.asdict(cfg), "d_model": d_model,
                       "d_compressed": d_compressed, "best_loss": best["loss"], "epoch": best["epoch"],
                       "best_metrics": best["heldout"], "train_metrics": best["train"]}, path)
    tracker.artifact(path, f"compressor-stage{cfg.stage}-best",
                     {"d_compressed": d_compressed, "compression_ratio": d_model / d_compressed,
                      "best_loss": best["loss"], "cosine_similarity": best["heldout"]["cosine_similarity"]})


def prepare_data(cfg: Phase1Config, tokenizer, llm) -> tuple[dict, callable]:
    """Texts for the stage, split 90/10, hidden states cached (or an online function with ``--online``)."""
    from llm_trm.data import load_stage1a_texts, split_heldout, stage1b_texts
    from llm_trm.hidden import cached_hidden, compute_hidden

    if cfg.stage == "1a":
        texts = load_stage1a_texts(cfg.data_path, cfg.num_samples, cfg.seed)
    else:
        texts = stage1b_texts(tokenizer, cfg.num_samples, cfg.seed)
    train_t, held_t = split_heldout(texts, cfg.heldout_fraction)
    if len(train_t) < 1 or len(held_t) < 1:
        raise UserError(f"--num_samples {cfg.num_samples} gives no train/held-out rows; use at least 2")

    def hid(t):
        return cached_hidden(cfg.model_name, llm.get, tokenizer, t, cfg.max_seq_length, cfg.cache_dir,
                             cfg.batch_size, llm.device)

    held = hid(held_t)
    if cfg.online:
        return {"train": train_t, "heldout": held}, lambda b: compute_hidden(
            llm.get(), tokenizer, b, cfg.max_seq_length, len(b), llm.device)
    return {"train": hid(train_t), "heldout": held}, None


def run_name(cfg: Phase1Config, d: int) -> str:
    if cfg.sweep:
        return f"sweep_d{d}_{cfg.stage}"
    return cfg.wandb_run_name or f"d{d}_bs{cfg.batch_size}_lr{cfg.learning_rate}_{cfg.stage}"


def run(cfg: Phase1Config) -> dict:
    """Phase-1 entry: one compressor, or a sweep over ``sweep_d_values`` (one d{D'}/ folder each)."""
    from llm_trm.checks import check_data_path, check_output_path
    from shared_utils.models import load_tokenizer

    check_output_path(cfg.output_dir, "--output_dir")
    check_data_path(cfg.data_path, names=("embedded", "wikitext", "wikitext2", "wikitext-2-raw-v1"))
    ds = cfg.sweep_d_values if cfg.sweep else [cfg.d_compressed]
    outs = {d: Path(cfg.output_dir) / f"d{d}" if cfg.sweep else Path(cfg.output_dir) for d in ds}
    if cfg.resume:  # refuse a corrupt or mismatched resume file before anything is loaded or written
        for d in ds:
            load_resume(outs[d] / resume_name(cfg.stage), cfg, d)
    if cfg.stage == "1b" and cfg.stage1b_from == "stage1a":  # fail before model work when stage 1a is missing
        for d in ds:
            init = Path(cfg.compressor_checkpoint or outs[d] / checkpoint_name("1a"))
            if not init.is_file():
                raise UserError(f"compressor checkpoint {init} not found (run stage 1a first, or pass "
                                "--compressor_checkpoint)")
    device = pick_run_device(cfg.device)
    d_model = model_hidden_size(cfg.model_name)
    too_big = [d for d in ds if d > d_model]
    if too_big:
        raise UserError(f"D'={too_big} larger than the model's hidden size D={d_model}")
    if cfg.stage == "1b" and cfg.stage1b_from == "stage1a":  # shape check of the stage-1a checkpoints
        for d in ds:
            load_compressor_state(cfg.compressor_checkpoint or outs[d] / checkpoint_name("1a"), d_model, d)
    tokenizer = load_tokenizer(cfg.model_name)
    llm = load_frozen_llm(cfg.model_name, device)
    data, online_fn = prepare_data(cfg, tokenizer, llm)
    results = {}
    for d in ds:
        out = Path(cfg.output_dir) / f"d{d}" if cfg.sweep else Path(cfg.output_dir)
        RunDir(out).write_config(dataclasses.asdict(cfg), name=f"config_stage{cfg.stage}.json")
        RunDir(out).write_meta(seed=cfg.seed, d_compressed=d, hidden_size=d_model)
        tracker = Tracker.create(cfg.use_wandb, cfg.wandb_project, run_name(cfg, d),
                                 {**dataclasses.asdict(cfg), "d_compressed": d, "hidden_size": d_model,
                                  "compression_ratio": d_model / d})
        try:
            results[d] = train_compressor(cfg, data, d_model, d, out, tracker, online_fn)
        finally:
            tracker.finish()
        h = results[d]["heldout"]
        print(f"[phase1 {cfg.stage}] D'={d} ({d_model / d:.0f}x): held-out mse={h['mse']:.5f} "
              f"cos={h['cosine_similarity']:.4f} rel={h['relative_error']:.4f} var={h['variance_ratio']:.4f} "
              f"-> {results[d]['checkpoint']}", flush=True)
    return results


@cli_main
def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(argv))


if __name__ == "__main__":
    main()
