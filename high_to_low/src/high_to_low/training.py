"""Training of TurboConn ("our method") and the LoRA baseline ("transformer"), as the original train.py.

    python train.py --our_method True --model_name smollm2-135m --dataset_name parity \\
        --checkpoint_root_folder ./checkpoints --batch_size 8 --group_size 4 --max_steps 10 --seq_len 8

Loss = sum over examples and answer-span tokens (":" + answer) of -log(p + 2^-24); Adam on LoRA + bridge
parameters; cyclic lr (100 warm-up steps, 900 cosine steps); grad-norm clip at batch_size; checkpoints
every --save_interval steps (atomic); a rerun resumes from the latest complete checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from high_to_low.get_model import (
    IMPROVED_RANK,
    TINY_MODEL,
    TRANSFORMER_RANK,
    build_model,
    matched_transformer_rank,
    parse_bridges,
    preset_bridges,
    select_trainable,
)
from high_to_low.reasoning_datasets import answer_text, check_dataset, encode, load_split, prompt_text
from shared_utils.errors import NonFiniteLossError, UserError
from shared_utils.models import pick_device
from shared_utils.runs import (
    RunDir,
    atomic_torch_save,
    atomic_write_json,
    check_output_path,
    load_json_file,
    load_torch_file,
    seed_everything,
)
from shared_utils.runs import check_resume_config as shared_check_resume_config

EPS = 2.0 ** -24  # the original's -log(p + 2^-24)
RESUME_KEYS = ("our_method", "model_name", "dataset_name", "batch_size", "group_size", "bridges", "multiplier",
               "lora_rank", "bridge_rank", "full_finetune", "seed", "base_lr", "warmup_steps", "period",
               "num_train", "seq_len", "max_n", "min_len", "data_dir", "tiny_layers", "split_batch_into")


def str2bool(text: str) -> bool:
    """The original's True|False strings, parsed properly (its type=bool made "False" true)."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train with high-to-low connections (or the LoRA baseline).")
    add = p.add_argument
    add("--our_method", type=str2bool, default=True, help="True: bridges + grouped forward; False: baseline")
    add("--model_name", default="meta-llama/Llama-3.1-8B", help="Hub id, local dir, smollm2-135m, or tiny")
    add("--dataset_name", default="multi-step-arithmetic", help="gsm8k | multi-step-arithmetic | parity")
    add("--checkpoint_root_folder", required=True)
    add("--batch_size", type=int, default=64, help="effective batch size (examples per optimizer step)")
    add("--group_size", type=int, default=4, help="g: bridge delay and tokens per sequential call")
    add("--split_batch_into", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    add("--save_interval", type=int, default=1000)
    add("--total_epochs", type=int, default=3)
    add("--multiplier", type=float, default=100, help="bridge scale in units of 0.01 (100 -> m = 1)")
    add("--gpu_memory_limit", default="35GiB", help="per-GPU max_memory for multi-GPU dispatch; unused on CPU")
    # Extras (not in the original README) for CPU runs and other models.
    add("--seed", type=int, default=42)
    add("--device", default="auto")
    add("--lr", type=float, default=3e-5, help="base learning rate (original 3e-5)")
    add("--warmup_steps", type=int, default=100)
    add("--period", type=int, default=900, help="cosine steps after warm-up; the cycle is warmup+period")
    add("--max_steps", type=int, default=None, help="stop after this many optimizer steps")
    add("--num_train", type=int, default=None, help="synthetic training examples (default 384000)")
    add("--seq_len", type=int, default=70, help="parity: longest bit string")
    add("--min_len", type=int, default=1, help="parity/arithmetic: shortest length")
    add("--max_n", type=int, default=30, help="multi-step-arithmetic: most expression-tree nodes")
    add("--data_dir", default=None, help="folder with train_shuffled.txt/valid.txt/test.txt, or GSM8K jsonl")
    add("--bridges", default=None, help="override the preset, e.g. '5:0,5:1'")
    add("--rank", type=int, default=None, help="improved model's LoRA and bridge rank r (default 120; tiny 32)")
    add("--transformer_rank", type=int, default=None,
        help="baseline LoRA rank (default: 140 for the Llama presets, else parameter-matched to r + bridges)")
    add("--full_finetune", type=str2bool, default=None, help="train all weights (default: True for tiny)")
    add("--tiny_layers", type=int, default=6, help="depth of the from-scratch tiny model")
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch default; 1 on a shared machine)")
    return p


def set_threads(n: int) -> None:
    """One thread avoids OpenMP spin-waiting when the cores are shared (10x slower steps measured)."""
    if n > 0:
        torch.set_num_threads(n)


def check_sizes(args, names) -> None:
    """Every named size flag that is set must be >= 1 (one line naming the flag and its value)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UserError(f"--{name} must be >= 1 (got {value})")


def check_generator_sizes(dataset: str, seq_len, min_len, max_n) -> None:
    """Parity needs 1 <= min_len <= seq_len; arithmetic 1 <= min_len <= max_n (else nothing can be generated)."""
    if dataset == "parity" and seq_len is not None and min_len is not None and not 1 <= min_len <= seq_len:
        raise UserError(f"parity needs 1 <= --min_len <= --seq_len (got --min_len {min_len}, --seq_len {seq_len})")
    if dataset == "multi-step-arithmetic" and max_n is not None and min_len is not None and not 1 <= min_len <= max_n:
        raise UserError(f"multi-step-arithmetic needs 1 <= --min_len <= --max_n (got --min_len {min_len}, "
                        f"--max_n {max_n})")


def validate(args) -> None:
    check_dataset(args.dataset_name)
    check_sizes(args, ("batch_size", "group_size", "split_batch_into", "save_interval", "total_epochs", "max_steps",
                       "num_train", "seq_len", "min_len", "max_n", "rank", "transformer_rank", "tiny_layers"))
    if args.batch_size % args.split_batch_into:
        raise UserError(f"--split_batch_into {args.split_batch_into} must divide --batch_size {args.batch_size}")
    if args.lr <= 0 or args.lr != args.lr:
        raise UserError(f"--lr must be > 0 (got {args.lr})")
    if args.warmup_steps < 0:
        raise UserError(f"--warmup_steps must be >= 0 (got {args.warmup_steps})")
    check_generator_sizes(args.dataset_name, args.seq_len, args.min_len, args.max_n)
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0 (got {args.threads})")
    check_output_path(args.checkpoint_root_folder, "--checkpoint_root_folder", kind="dir")


def model_short(model_name: str) -> str:
    return Path(str(model_name).rstrip("/")).name


def checkpoint_folder(root, our_method: bool, model_name: str, dataset: str) -> Path:
    kind = "improved" if our_method else "transformer"
    return Path(root) / f"{kind}_training_checkpoint_test_{model_short(model_name)}_{dataset}"


def resolve_config(args, num_layers: int, lm_config) -> dict:
    """The run's full configuration (written as save_configs.json and used to rebuild the model)."""
    full = args.model_name == TINY_MODEL if args.full_finetune is None else args.full_finetune
    bridges = parse_bridges(args.bridges, num_layers) if args.bridges else preset_bridges(args.model_name, num_layers)
    rank = args.rank or (32 if args.model_name == TINY_MODEL else IMPROVED_RANK)
    # The baseline's LoRA rank matches the improved model's trainable parameters (LoRA r + bridges):
    # the original's 140 for its own r = 120 presets, else the smallest rank with at least as many.
    preset = any(k in args.model_name.lower() for k in ("llama-3.1-8b", "llama-3.2-1b")) and rank == IMPROVED_RANK
    base_rank = args.transformer_rank or (
        TRANSFORMER_RANK if preset else matched_transformer_rank(lm_config, len(bridges), rank))
    return {
        "batch_size": args.batch_size, "group_size": args.group_size, "base_lr": args.lr,
        "warmup_steps": args.warmup_steps, "period": args.period, "seed": args.seed,
        "bridges": bridges if args.our_method else [], "model_name": args.model_name,
        "multiplier": args.multiplier, "our_method": args.our_method, "dataset_name": args.dataset_name,
        "bridge_rank": rank, "lora_rank": rank if args.our_method else base_rank,
        "full_finetune": full, "tiny_layers": args.tiny_layers, "split_batch_into": args.split_batch_into,
        "num_train": args.num_train, "seq_len": args.seq_len, "min_len": args.min_len, "max_n": args.max_n,
        "data_dir": args.data_dir, "total_epochs": args.total_epochs, "save_interval": args.save_interval,
        "max_steps": args.max_steps, "gpu_memory_limit": args.gpu_memory_limit,
    }


# ---------------------------------------------------------------------------------------- batches, loss
def make_batch(items, tokenizer, group_size: int, device="cpu"):
    """Right-padded ids, attention mask and answer-span mask (B, T), T rounded up to a multiple of g."""
    seqs, spans = [], []
    for it in items:
        prompt, answer = encode(tokenizer, prompt_text(it)), encode(tokenizer, answer_text(it))
        seqs.append(prompt + answer)
        spans.append((len(prompt), len(prompt) + len(answer)))
    T = max(len(s) for s in seqs)
    T = -(-T // group_size) * group_size
    ids = torch.full((len(seqs), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    span = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (s, (a, b)) in enumerate(zip(seqs, spans)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        span[i, a:b] = True
    return ids.to(device), mask.to(device), span.to(device)


def span_logprobs(logits, ids, span):
    """Per-example sums over the span of log p(token) and of -log(p + 2^-24), and all-argmax flags."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target, tmask = ids[:, 1:], span[:, 1:]
    tok_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    nll_eps = -torch.log(tok_logp.exp() + EPS)
    correct = (logits[:, :-1].argmax(-1) == target) | ~tmask
    return (tok_logp * tmask).sum(1), (nll_eps * tmask).sum(1), correct.all(1)


def lr_at(step: int, base: float, warmup: int = 100, period: int = 900) -> float:
    """The original's cyclic schedule: linear warm-up from 0, then cosine to 0, restarting every cycle."""
    w = step % (warmup + period)
    if w <= warmup:
        return base * w / max(1, warmup)
    return 0.5 * base * (1 + math.cos(math.pi * (w - warmup) / period))


# --------------------------------------------------------------------------------------- checkpoints
def latest_checkpoint(folder: Path) -> int | None:
    """Highest step j with a complete checkpoint (training_state_j.json is written last)."""
    steps = []
    for f in folder.glob("training_state_*.json"):
        j = f.stem.rsplit("_", 1)[1]
        if j.isdigit() and (folder / f"pretrain_improved_{j}.pth").exists() and \
                (folder / f"optimizer_state_{j}.pth").exists():
            steps.append(int(j))
    return max(steps) if steps else None


def trainable_state(model, names) -> dict:
    params = dict(model.named_parameters())
    return {n: params[n].detach().cpu().clone() for n in names}


def load_trainable(model, path: Path, names) -> None:
    """Load a pretrain_improved_*.pth into the model; missing or extra tensors are a clear error."""
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} does not hold a dict of tensors")
    expected = set(names)
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise UserError(f"{path} does not match this model (missing {missing}, unexpected {extra})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            if params[n].shape != t.shape:
                raise UserError(f"{path}: {n} has shape {tuple(t.shape)}, model wants {tuple(params[n].shape)}")
            params[n].copy_(t)


def save_checkpoint(folder: Path, j: int, epoch: int, model, names, optimizer, tracking) -> None:
    atomic_torch_save(trainable_state(model, names), folder / f"pretrain_improved_{j}.pth")
    atomic_torch_save(optimizer.state_dict(), folder / f"optimizer_state_{j}.pth")
    atomic_write_json(folder / f"loss_tracking_{j}.json", tracking)
    atomic_write_json(folder / f"training_state_{j}.json", {"iteration": j, "epoch": epoch})


def check_resume_config(folder: Path, cfg: dict) -> None:
    """Refuse to resume a folder trained with other settings (names each differing key with both values)."""
    path = folder / "save_configs.json"
    if not path.exists():
        return
    old = load_json_file(path, "saved config")
    if not isinstance(old, dict):
        raise UserError(f"saved config {path} is not a JSON object")
    new = json.loads(json.dumps(cfg))  # as it would be saved (tuples become lists)
    shared_check_resume_config(old, new, keys=[k for k in RESUME_KEYS if k in old], what=f"checkpoint folder {folder}")


def dispatch_if_multi_gpu(model, device, limit: str):
    """Naive layer-wise model parallelism over all GPUs (the original's accelerate dispatch)."""
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return model.to(device)
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    max_memory = {i: limit for i in range(torch.cuda.device_count())}
    no_split = ["LlamaDecoderLayer"]
    balanced = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split)
    device_map = infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=no_split)
    return dispatch_model(model, device_map=device_map)


def base_config(model_name: str, tiny_layers: int = 6):
    """The model's config without loading weights (to derive bridges and ranks before building)."""
    from high_to_low.get_model import tiny_config
    from high_to_low.reasoning_datasets import WordTokenizer

    if model_name == TINY_MODEL:
        return tiny_config(WordTokenizer(), num_layers=tiny_layers)
    from transformers import AutoConfig

    from shared_utils.models import resolve_model_path

    return AutoConfig.from_pretrained(resolve_model_path(model_name))


def train_items(cfg: dict) -> list[dict]:
    gen = {"seq_len": cfg["seq_len"], "min_len": cfg["min_len"], "max_n": cfg["max_n"]}
    # Training data come from --seed (default 42 = the original's seed), so seeds vary data and init.
    items = load_split(cfg["dataset_name"], "train", cfg["data_dir"], num=cfg["num_train"], seed=cfg["seed"], **gen)
    if len(items) < cfg["batch_size"]:
        raise UserError(f"{len(items)} training examples < --batch_size {cfg['batch_size']}")
    return items


def train_step(model, batch, cfg, params, optimizer, scaler, device, forward=None, world: int = 1) -> dict:
    """One optimizer step over ``split_batch_into`` micro-batches; the loss is a sum, so k changes nothing.

    Multi-process (``world`` > 1): ``batch`` is this rank's shard and ``forward`` the DistributedDataParallel
    wrapper, which averages gradients over ranks; the loss is scaled by ``world`` so that the all-reduced
    gradient is the sum over the whole batch, as in one process. Returned loss / answer_prob are global.
    """
    optimizer.zero_grad(set_to_none=True)
    forward = forward or model
    k, total_loss, probs = cfg["split_batch_into"], 0.0, []
    size = len(batch) // k
    for i in range(k):
        ids, mask, span = make_batch(batch[i * size: (i + 1) * size], model.tokenizer, cfg["group_size"], device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            logits = forward(ids, mask)
        logp, nll, _ = span_logprobs(logits, ids, span)
        loss = nll.sum()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss ({loss.item()}); stopping, the last good checkpoint is kept")
        probs.extend(logp.detach().exp().tolist())
        if loss.item() > 1e6:  # the original's guard: skip this micro-batch's backward
            continue
        scaled = loss * world if world > 1 else loss
        (scaler.scale(scaled) if scaler else scaled).backward()
        total_loss += loss.item()
    if scaler:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg["batch_size"])  # = clip 1.0 on the mean loss
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    sums = [total_loss, sum(probs), float(len(batch)), float(len(probs))]
    if world > 1:
        t = torch.tensor(sums, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        sums = t.tolist()
    return {"loss": sums[0] / sums[2], "answer_prob": sums[1] / sums[3], "grad_norm": float(grad_norm)}


def init_distributed(device):
    """(rank, world size, device) under torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA; else (0, 1, device)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def train(args) -> Path:
    """Run (or resume) training; returns the checkpoint folder."""
    validate(args)
    set_threads(args.threads)
    rank, world, device = init_distributed(pick_device(args.device))
    if args.batch_size % (world * args.split_batch_into):
        raise UserError(f"--batch_size {args.batch_size} must be divisible by {world} processes x "
                        f"--split_batch_into {args.split_batch_into}")
    cfg = resolve_config(args, base_config(args.model_name, args.tiny_layers).num_hidden_layers,
                         base_config(args.model_name, args.tiny_layers))
    folder = checkpoint_folder(args.checkpoint_root_folder, args.our_method, args.model_name, args.dataset_name)
    check_output_path(folder, "checkpoint folder", kind="dir")
    check_resume_config(folder, cfg)
    seed_everything(args.seed)
    items = train_items(cfg)
    model, tok = build_model(cfg)
    model.tokenizer = tok
    names = [n for n, _ in model.trainable_named_parameters(cfg["full_finetune"])]
    params = select_trainable(model, cfg["full_finetune"])
    forward = None
    if world > 1:  # data parallel: each rank a contiguous shard of every batch, DDP all-reduces the gradients
        from torch.nn.parallel import DistributedDataParallel

        model = model.to(device)
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model = dispatch_if_multi_gpu(model, device, args.gpu_memory_limit)
    optimizer = torch.optim.Adam(params, lr=0.0)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    run = RunDir(folder)
    if rank == 0:  # logs, config and checkpoints are written by rank 0 only
        run.write_config(cfg, "save_configs.json")
        run.write_meta(seed=args.seed, trainable_params=sum(p.numel() for p in params), world_size=world)
    j, tracking = 0, []
    last = latest_checkpoint(folder)
    if last is not None:
        load_trainable(model, folder / f"pretrain_improved_{last}.pth", names)
        opt_path = folder / f"optimizer_state_{last}.pth"
        try:
            optimizer.load_state_dict(load_torch_file(opt_path, "optimizer state"))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"optimizer state {opt_path} does not match this model ({exc})") from None
        tracking = load_json_file(folder / f"loss_tracking_{last}.json", "loss tracking file")
        j = last
    steps_per_epoch = len(items) // cfg["batch_size"]  # an incomplete last batch is skipped
    total = steps_per_epoch * cfg["total_epochs"]
    total = min(total, args.max_steps) if args.max_steps else total
    print(f"[train] {folder.name}: {len(items)} examples, {sum(p.numel() for p in params):,} trainable params, "
          f"{len(cfg['bridges'])} bridges, steps {j}->{total}", flush=True)
    model.train()
    bar = tqdm(range(j, total), initial=j, total=total, desc="train", mininterval=5, disable=rank > 0)
    shard = cfg["batch_size"] // world
    for j in bar:
        epoch, b = divmod(j, steps_per_epoch)
        batch = items[b * cfg["batch_size"]: (b + 1) * cfg["batch_size"]][rank * shard: (rank + 1) * shard]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(j, cfg["base_lr"], cfg["warmup_steps"], cfg["period"])
        t0 = time.perf_counter()
        stats = train_step(model, batch, cfg, params, optimizer, scaler, device, forward, world)
        stats["step_time"] = time.perf_counter() - t0
        tracking.append(stats["answer_prob"])
        bar.set_postfix(loss=f"{stats['loss']:.3f}", p=f"{stats['answer_prob']:.3f}")
        if rank == 0:
            run.log(j + 1, epoch=epoch, lr=optimizer.param_groups[0]["lr"], **stats)
        if (j + 1) % args.save_interval == 0 or j + 1 == total:
            if rank == 0:
                save_checkpoint(folder, j + 1, epoch, model, names, optimizer, tracking)
            if world > 1:
                torch.distributed.barrier()
    if world > 1:
        check_ranks_identical(params, device)
        torch.distributed.barrier()
        print(f"[train] rank {rank}: weights identical on all {world} ranks", flush=True)
    return folder


def check_ranks_identical(params, device) -> None:
    """All ranks must hold the same trainable weights after training (DDP keeps them in sync)."""
    flat = torch.cat([p.detach().reshape(-1).double() for p in params]).to(device)
    stats = torch.stack([flat.sum(), flat.abs().sum(), (flat * torch.arange(flat.numel(), device=device)).sum()])
    gathered = [torch.zeros_like(stats) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, stats)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"ranks hold different weights after training: {[g.tolist() for g in gathered]}")
