"""Training: data, optimizer, schedule and the merge hook shared by the HF Trainer path and the manual loop.

Both paths read the same pre-shuffled rows sequentially, use the same AdamW parameter groups (Trainer's rule: no
weight decay on biases and norms), the same schedule, clipping and loss normalisation (summed token NLL / number of
target tokens in the accumulation window), and call the same ``MergeHook`` after optimizer.step -> scheduler.step ->
zero_grad -> global_step += 1 (where Trainer fires ``on_step_end``). With the same seed they give the same losses
and weights (tests/test_train.py).

    python scripts/train_superrelora.py --config training_configs/superrelora_160m.yaml [--use_trainer]
"""

from __future__ import annotations

import math
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from shared_utils.errors import NonFiniteLossError, UserError
from shared_utils.models import load_tokenizer, pick_device
from shared_utils.runs import RunDir, atomic_write_json, atomic_write_text, seed_everything
from superrelora import dist
from superrelora.checkpoint import (
    export_merged,
    latest_checkpoint,
    load_checkpoint,
    save_adapter_and_base,
    save_checkpoint,
    validate_checkpoint,
)
from superrelora.config import TrainConfig, check_output_dir, config_to_dict
from superrelora.data import PadCollator, load_text_rows, shuffled, tokenize_rows
from superrelora.evaluate import evaluate_text
from superrelora.merge import MergeHook
from superrelora.model import build_model, load_base_model, trainable_parameters
from superrelora.preflight import check_dataset, check_model_name, resume_dir
from superrelora.tokenizer import ByteTokenizer


@dataclass
class Setup:
    """Everything both training paths need, built once from a config."""

    cfg: TrainConfig
    model: torch.nn.Module
    tokenizer: object
    train_rows: list
    eval_text: list
    total_steps: int
    device: torch.device
    hook: MergeHook
    collator: PadCollator
    run: RunDir
    history: list = field(default_factory=list)
    resume: Path | None = None  # checkpoint to resume from (validated before anything was built)
    resume_info: dict = field(default_factory=dict)  # its run record: config + merge log


def get_tokenizer(cfg: TrainConfig):
    if str(cfg.model_name).endswith(".json"):
        return ByteTokenizer()
    return load_tokenizer(cfg.model_name)


def count_updates(n_rows: int, cfg: TrainConfig) -> int:
    """Optimizer updates in the run (Trainer's rule: the last, shorter accumulation window of an epoch counts)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    n_batches = math.ceil(n_rows / (cfg.batch_size * dist.world_size()))  # global batch = per-rank x ranks
    return math.ceil(n_batches / cfg.gradient_accumulation_steps) * cfg.num_epochs


def make_hook(cfg: TrainConfig, probe=None) -> MergeHook:
    mode = {"superrelora": "superrelora", "relora": "relora"}.get(cfg.effective_method, "none")
    return MergeHook(mode=mode, every=cfg.merge_every, alpha=cfg.merge_alpha, split=cfg.merge_split,
                     moments=cfg.merge_moments, prune=cfg.relora_prune, probe=probe)


def prepare(cfg: TrainConfig, base: torch.nn.Module | None = None, tokenizer=None) -> Setup:
    """Seed, load data, build the model (after seeding, so LoRA A is reproducible) and the hook."""
    seed_everything(cfg.seed)  # the same seed on every rank: identical LoRA draws and ReLoRA re-inits
    device = pick_device(cfg.device)
    if dist.world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.fp16 and device.type != "cuda":
        raise UserError("fp16 needs CUDA; on CPU use bf16: true or fp32")
    tokenizer = tokenizer if tokenizer is not None else get_tokenizer(cfg)
    text = load_text_rows(cfg.dataset_name, "train", cfg.dataset_config, cfg.num_eval_samples)
    rows = tokenize_rows(tokenizer, text, cfg.max_length, limit=cfg.limit_train_examples)
    if not rows:
        raise UserError(f"no training rows with >= 2 tokens in {cfg.dataset_name}")
    eval_text = load_text_rows(cfg.dataset_name, "validation", cfg.dataset_config, cfg.num_eval_samples)
    eval_text = eval_text[: cfg.num_eval_samples]
    if base is None:
        base = load_base_model(cfg.model_name)
    seed_everything(cfg.seed)
    model = build_model(cfg, base).to(device)
    model.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    run = RunDir(cfg.output_dir)
    collator = PadCollator(pad)
    probe = make_probe(tokenizer, eval_text, collator, device) if cfg.track_merge_logits else None
    return Setup(cfg, model, tokenizer, shuffled(rows, cfg.seed), eval_text, count_updates(len(rows), cfg),
                 device, make_hook(cfg, probe), collator, run)


def make_probe(tokenizer, eval_text: list[str], collator: PadCollator, device, n: int = 2, length: int = 32):
    """Logits of a fixed 2-row batch; the merge hook compares them before and after every merge."""
    batch = collator(tokenize_rows(tokenizer, eval_text, length, limit=n))
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}

    @torch.no_grad()
    def probe(model):
        return model(**batch).logits.float() * batch["attention_mask"][..., None]

    return probe


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainer's param groups: weight decay except on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        low = name.lower()
        (no_decay if ("bias" in low or "norm" in low) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optimizer
    return torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                             betas=(o.beta1, o.beta2), eps=o.eps)


def jagged_cosine_lambda(total: int, warmup: int, restart_every: int, restart_warmup: int, min_ratio: float):
    """ReLoRA's schedule: cosine to ``min_ratio`` with a linear re-warmup after every merge (restart)."""
    def fn(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if restart_every > 0 and step >= restart_every:
            since = step % restart_every
            if since < restart_warmup:
                return cos * (since + 1) / (restart_warmup + 1)
        return cos
    return fn


def schedule_lambda(kind: str, horizon: int, warmup: int):
    """Linear / cosine / constant with linear warmup; past ``horizon`` the factor stays at its end value (HF's
    cosine would rise again), so a YAML ``scheduler.total_steps`` shorter than the run is safe."""
    def fn(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return fn


def build_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """LambdaLR for every schedule (same object in the Trainer path and the manual loop)."""
    s = cfg.scheduler
    horizon = s.total_steps or total_steps
    if s.total_steps and s.total_steps < total_steps:
        print(f"note: scheduler.total_steps={s.total_steps} < {total_steps} updates: the LR stays at its final "
              "value after that", flush=True)
    if s.type == "jagged_cosine":
        fn = jagged_cosine_lambda(horizon, s.warmup_steps, cfg.merge_every, s.restart_warmup_steps, s.min_lr_ratio)
    else:
        fn = schedule_lambda(s.type, horizon, s.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if cfg.fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def update_windows(setup: Setup) -> list[tuple[int, list[dict]]]:
    """(epoch, micro-batches) per optimizer update, in Trainer's order (sequential reads, GA windows per epoch)."""
    cfg, rows = setup.cfg, setup.train_rows
    out: list[tuple[int, list[dict]]] = []
    epoch = 0
    while len(out) < setup.total_steps:
        step = cfg.batch_size * dist.world_size()  # global micro-batch; train_manual gives each rank its slice
        mb = [rows[i : i + step] for i in range(0, len(rows), step)]
        for i in range(0, len(mb), cfg.gradient_accumulation_steps):
            out.append((epoch, mb[i : i + cfg.gradient_accumulation_steps]))
        epoch += 1
    return out[: setup.total_steps]


def record_step(setup: Setup, step: int, epoch: float, loss: float, lr: float, merge: dict | None) -> None:
    row = {"step": step, "epoch": epoch, "loss": loss, "learning_rate": lr}
    if merge:
        row.update({k: v for k, v in merge.items() if k != "step"})
    setup.history.append(row)
    if not dist.is_main():  # only rank 0 writes
        return
    setup.run.log(**row)
    if setup.cfg.logging_steps > 0 and step % setup.cfg.logging_steps == 0:  # console; metrics.jsonl has every step
        merged = f" | merge #{merge['merge_count']} norm {merge['merge_norm']:.3g}" if merge and "merge_norm" in merge else ""
        tqdm.write(f"step {step} | loss {loss:.4f} | lr {lr:.3g}{merged}")
    with (setup.run.path / "loss_log.csv").open("a") as fh:  # the original manual loop's file and header
        if fh.tell() == 0:
            fh.write("step,epoch,loss\n")
        fh.write(f"{step},{epoch:.4f},{loss:.6f}\n")


def _rank_slice(batch: list[dict], cfg: TrainConfig) -> list[dict]:
    """This rank's share of a global micro-batch (contiguous; ranks past the end of a short batch get none)."""
    n = math.ceil(len(batch) / dist.world_size())
    return batch[dist.rank() * n : (dist.rank() + 1) * n]


def train_manual(setup: Setup) -> dict:
    """The manual loop (fixed: tensors, pad masking, clipping, schedule, merges, accumulation, checkpoints).

    Under torchrun the forward/backward go through DistributedDataParallel (gradients averaged over ranks);
    merges, clipping and the optimizer step then act on identical gradients and weights on every rank.
    """
    cfg, model, device = setup.cfg, setup.model, setup.device
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, setup.total_steps)
    start = 0
    if setup.resume is not None:
        start = int(load_checkpoint(setup.resume, model, opt, sched)["global_step"])
        setup.hook.restore(start, setup.resume_info.get("merges"))
    windows = update_windows(setup)
    params = [p for p in model.parameters() if p.requires_grad]
    world = dist.world_size()
    fwd = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        fwd = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    times = []
    for step_idx in tqdm(range(start, setup.total_steps), desc=f"train {cfg.effective_method}", initial=start,
                         total=setup.total_steps, disable=not dist.is_main()):
        t0 = time.perf_counter()
        _, window = windows[step_idx]
        window = [setup.collator(b) for b in window]  # global micro-batches: every rank counts all tokens
        n_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in window)
        mine = [setup.collator(part) for part in (_rank_slice(b, cfg) for b in windows[step_idx][1]) if part]
        loss_sum = 0.0
        for batch in mine:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(cfg, device):
                # DDP averages gradients over ranks: normalising by n_items / world gives sum(NLL) / n_items
                out = fwd(**batch, num_items_in_batch=n_items / world if world > 1 else n_items)
            out.loss.backward()
            loss_sum += float(out.loss.detach())
        loss_sum = dist.mean_across(loss_sum, device)
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(f"non-finite loss at update {step_idx + 1}; last good checkpoint: "
                                     f"{latest_checkpoint(cfg.output_dir) or 'none'}")
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        model.zero_grad()
        step = step_idx + 1
        merge = setup.hook.on_update(step, model, opt)
        if device.type == "cuda":
            torch.cuda.synchronize()  # honest per-update times on GPU (kernels are asynchronous)
        times.append(time.perf_counter() - t0)
        record_step(setup, step, step / _updates_per_epoch(setup), loss_sum, lr, merge)
        if cfg.save_steps > 0 and step % cfg.save_steps == 0 and step < setup.total_steps and dist.is_main():
            save_checkpoint(Path(cfg.output_dir) / f"checkpoint-{step}", model, opt, sched, step, _everything(cfg),
                            run_info={"config": config_to_dict(cfg), "merges": setup.hook.events})
        _maybe_eval(setup, step)
    return {"step_times": times}


def _updates_per_epoch(setup: Setup) -> int:
    cfg = setup.cfg
    return max(1, math.ceil(math.ceil(len(setup.train_rows) / cfg.batch_size) / cfg.gradient_accumulation_steps))


def _everything(cfg: TrainConfig) -> bool:
    """A base drawn at random from a config file is not reproducible from its name: save all of it."""
    return str(cfg.model_name).endswith(".json")


def _resume_dir(cfg: TrainConfig) -> Path | None:
    return resume_dir(cfg)


def _maybe_eval(setup: Setup, step: int) -> None:
    cfg = setup.cfg
    if dist.is_main() and cfg.eval_steps > 0 and step % cfg.eval_steps == 0 and step < setup.total_steps:
        res = evaluate_text(setup.model, setup.tokenizer, setup.eval_text, cfg.eval_max_length,
                            cfg.eval_batch_size, stream=False)
        setup.run.log(step=step, eval_loss=res["loss"], eval_perplexity=res["perplexity"],
                      eval_accuracy=res["accuracy"])


def summarize(setup: Setup, times: list[float], wall: float) -> dict:
    """README's training summary: train loss = mean over the run (Trainer's train_loss), runtime, steps/s."""
    losses = [r["loss"] for r in setup.history]
    cfg = setup.cfg
    steady = times[1:] if len(times) > 1 else times
    samples = cfg.batch_size * cfg.gradient_accumulation_steps
    return {
        "method": cfg.effective_method, "path": "trainer" if cfg.use_trainer else "manual",
        "train_loss": sum(losses) / max(1, len(losses)),
        "final_train_loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "train_runtime": wall, "steps": len(losses),
        "train_steps_per_second": len(losses) / wall if wall > 0 else float("nan"),
        "train_samples_per_second": len(losses) * samples / wall if wall > 0 else float("nan"),
        "steady_steps_per_second": len(steady) / sum(steady) if steady and sum(steady) > 0 else float("nan"),
        "merges": len([e for e in setup.hook.events if "merge_norm" in e]),
        "merge_steps": [e["step"] for e in setup.hook.events],
        "max_logit_change": max([e["max_logit_change"] for e in setup.hook.events if "max_logit_change" in e],
                                default=None),
        "trainable_params": trainable_parameters(setup.model),
        "total_params": sum(p.numel() for p in setup.model.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _reset_logs(setup: Setup) -> None:
    """A fresh run starts empty logs; a resumed one keeps the rows up to the checkpoint's step."""
    resume = setup.resume
    keep = int(resume.name.split("-")[-1]) if resume is not None else 0
    rows = [r for r in setup.run.read_metrics() if keep and "loss" in r and r.get("step", 0) <= keep]
    for name in ("metrics.jsonl", "loss_log.csv"):
        (setup.run.path / name).unlink(missing_ok=True)
    for r in rows:
        record_step(setup, r["step"], r["epoch"], r["loss"], r["learning_rate"],
                    {k: v for k, v in r.items() if k.startswith("merge")} or None)


def run_training(cfg: TrainConfig, base=None, tokenizer=None, export: bool = True, evaluate: bool = True) -> dict:
    """Train per ``cfg``, write the run directory, evaluate; returns the summary (also in summary.json).

    Bad output paths and bad or mismatched checkpoints fail here, before data or models are loaded. Under torchrun
    (WORLD_SIZE > 1) the manual loop trains data-parallel and only rank 0 writes or evaluates.
    """
    check_output_dir(cfg.output_dir)
    check_model_name(cfg.model_name)
    check_dataset(cfg)
    resume = _resume_dir(cfg)
    info = validate_checkpoint(resume, config_to_dict(cfg)) if resume is not None else {}
    dist.maybe_init(cfg.device)  # under torchrun; the HF Trainer path reuses this process group
    setup = prepare(cfg, base, tokenizer)
    setup.resume, setup.resume_info = resume, info
    main = dist.is_main()
    if main:
        _reset_logs(setup)
        setup.run.write_config(config_to_dict(cfg))
        setup.run.write_meta(seed=cfg.seed, world_size=dist.world_size())
    t0 = time.perf_counter()
    if cfg.use_trainer:
        from superrelora.trainer_path import train_with_trainer

        out = train_with_trainer(setup)
    else:
        out = train_manual(setup)
    summary = summarize(setup, out["step_times"], time.perf_counter() - t0)
    summary["world_size"] = dist.world_size()
    if main:
        final = Path(cfg.output_dir) / "final_model"
        save_adapter_and_base(setup.model, final, _everything(cfg))
        if export:
            export_merged(setup.model, Path(cfg.output_dir) / "merged_model", setup.tokenizer
                          if not isinstance(setup.tokenizer, ByteTokenizer) else None)
        if evaluate:
            res = evaluate_text(setup.model, setup.tokenizer, setup.eval_text, cfg.eval_max_length,
                                cfg.eval_batch_size, stream=True, legacy=cfg.legacy_eval)
            summary.update({f"eval_{k}": v for k, v in res.items()})
        atomic_write_json(Path(cfg.output_dir) / "summary.json", summary)
        atomic_write_text(Path(cfg.output_dir) / "merges.json", __import__("json").dumps(setup.hook.events, indent=1))
    dist.barrier()
    summary["_setup"] = setup
    return summary
