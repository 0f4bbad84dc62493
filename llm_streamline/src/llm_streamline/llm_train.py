"""LLM-loss training: the pruned model is trained end to end with next-token loss, only the lightweight net learns.

    CUDA_VISIBLE_DEVICES=0,1,2,3 accelerate launch --config_file 4gpu.yaml llmloss_entry.py
    python llmloss_entry.py --model_name smollm2-135m --data_path embedded --seq_len 128 --train_num_data 32 \
        --cosine_num_data 16 --num_test_blocks 8 --batch_size 4 --gradient_accumulation_step 2 --output_dir runs/llm

Faithful to train_llmloss.py (spec 2.7): ``Accelerator(mixed_precision, gradient_accumulation_steps)``, the
pruned model starts from the original weights (layer ``best`` kept), AdamW(lr, wd, betas 0.9/0.95), validation
loss before training and after every epoch, the best state saved. Fixed: the trainable set is the lightweight
module objects, not the name substring ``layers.{best}`` that also unfroze layers 20-29 when best = 2 (bug 3);
block selection runs once on the main process and is broadcast, with seeded data, so ranks cannot disagree
(bug 5); a result is saved even when validation never improves (bug 6).
"""

from __future__ import annotations

import copy
import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from llm_streamline import checkpoint as ckpt
from llm_streamline import data as D
from llm_streamline.adapters import get_adapter
from llm_streamline.args import as_dict, parse_args
from llm_streamline.lightweight import build_lightweight, trainable_parameters
from llm_streamline.pipeline import assemble, save_output, select_block, setup
from llm_streamline.scheduler import cosine_schedule, horizons
from shared_utils.errors import NonFiniteLossError, UserError


def make_accelerator(args):
    from accelerate import Accelerator

    cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    mp = args.mixed_precision
    if mp == "auto":
        mp = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=args.gradient_accumulation_step, cpu=cpu)


def lightweight_slots(pruned, best: int, k: int) -> torch.nn.ModuleList:
    """The module objects in the lightweight slots of the pruned model (what is trained)."""
    layers = get_adapter(pruned).layers(pruned)
    return torch.nn.ModuleList(layers[best + i] for i in range(k))


def freeze_all_but(pruned, params: list[torch.nn.Parameter]) -> None:
    pruned.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)


@torch.no_grad()
def validation_loss(model, loader, accelerator) -> float:
    """Token-weighted mean next-token loss over the (sharded) loader, gathered across ranks."""
    model.eval()
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    for (ids,) in loader:
        out = model(input_ids=ids, labels=ids, use_cache=False)
        n_tok = ids.numel() - ids.shape[0]
        total += torch.tensor([out.loss.double().item() * n_tok, n_tok], device=accelerator.device, dtype=torch.float64)
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1].clamp_min(1))


def llm_micro_step(model, ids: torch.Tensor, backward) -> torch.Tensor:
    """Forward with the causal-LM loss and ``backward(loss)`` (``accelerator.backward`` in training)."""
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    if not torch.isfinite(loss):
        raise NonFiniteLossError("non-finite LM loss")
    backward(loss)
    return loss


def epoch_loader(train_blocks, args, epoch: int, accelerator, skip: int = 0):
    """This epoch's shuffled loader (order = f(seed, epoch), so a resumed run sees the same batches), sharded
    across ranks by Accelerate; ``skip`` micro-batches already consumed are skipped."""
    order = torch.randperm(len(train_blocks), generator=torch.Generator().manual_seed(args.seed + epoch))
    loader = accelerator.prepare_data_loader(DataLoader(TensorDataset(train_blocks[order]), batch_size=args.batch_size))
    return accelerator.skip_first_batches(loader, skip) if skip else loader


def train_llm(pruned, trainable, train_blocks, test_blocks, args, accelerator, best: int, k: int, log=print,
              resume: dict | None = None, config: dict | None = None) -> dict:
    """Train ``trainable`` (parameters of the lightweight slots) with the causal-LM loss; restores the best state.

    With ``args.save_steps`` the main process writes a checkpoint every that many optimizer steps; ``resume``
    continues from one (same weights at the end as an uninterrupted run).
    """
    freeze_all_but(pruned, trainable)
    test_loader = DataLoader(TensorDataset(test_blocks), batch_size=args.batch_size)
    # fixed: horizons in the optimizer steps each rank really takes (micro-batches per rank); reference: the
    # original's un-sharded len(train_loader), computed before accelerator.prepare
    per_rank = -(-len(train_blocks) // (args.batch_size * accelerator.num_processes))
    unsharded = -(-len(train_blocks) // args.batch_size)
    warmup, total = horizons(per_rank if args.lr_schedule == "fixed" else unsharded, args.epoches,
                             args.gradient_accumulation_step, "llm", args.lr_schedule, args.warmup_ratio)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.wd, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, warmup, total, args.lr, args.min_lr)  # not prepared, as in the original
    pruned, opt, test_loader = accelerator.prepare(pruned, opt, test_loader)
    slots = lightweight_slots(accelerator.unwrap_model(pruned), best, k)
    clip = args.max_grad_norm if args.max_grad_norm >= 0 else 1.0  # the DeepSpeed config's gradient_clipping
    deepspeed = accelerator.distributed_type.name == "DEEPSPEED"
    start_epoch, start_micro, step = 0, 0, 0
    if resume is None:
        best_val = validation_loss(pruned, test_loader, accelerator)
        best_state = copy.deepcopy(slots.state_dict())
        history = {"val_loss": [best_val], "train_loss": [], "lr": []}
        if accelerator.is_main_process:
            log(f"validation loss before training: {best_val:.4f}")
    else:
        slots.load_state_dict(resume["modules"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        best_val, best_state, history = resume["best_val"], resume["best_state"], resume["history"]
        start_epoch, start_micro, step = resume["epoch"], resume["micro"], resume["step"]
        accelerator.step = resume["accelerator_step"]
        if accelerator.is_main_process:
            log(f"resumed at epoch {start_epoch + 1}, micro-batch {start_micro} ({step} optimizer steps done)")
    backward = accelerator.backward
    for epoch in range(start_epoch, args.epoches):
        pruned.train()
        micro = start_micro if epoch == start_epoch else 0
        loader = epoch_loader(train_blocks, args, epoch, accelerator, micro)
        bar = tqdm(loader, desc=f"llm-loss epoch {epoch + 1}", leave=False, disable=not accelerator.is_main_process)
        for (ids,) in bar:
            with accelerator.accumulate(pruned):
                try:
                    loss = llm_micro_step(pruned, ids, backward)
                except NonFiniteLossError:
                    slots.load_state_dict(best_state)
                    raise NonFiniteLossError(f"non-finite LM loss in epoch {epoch + 1}; the best state so far "
                                             "was kept") from None
                if accelerator.sync_gradients and not deepspeed:
                    accelerator.clip_grad_norm_(trainable, clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            micro += 1
            # reference: the unprepared scheduler stepped on every micro-batch; fixed: on optimizer steps only
            if args.lr_schedule == "reference" or accelerator.sync_gradients:
                sched.step()
            history["train_loss"].append(loss.item())
            history["lr"].append(sched.get_last_lr()[0])
            if accelerator.sync_gradients:
                step += 1
                if getattr(args, "save_steps", 0) and step % args.save_steps == 0:
                    save_checkpoint(args, config, accelerator, slots, opt, sched, best_val, best_state, history,
                                    step, epoch, micro)
                time.sleep(_step_delay())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val = validation_loss(pruned, test_loader, accelerator)
        history["val_loss"].append(val)
        if accelerator.is_main_process:
            log(f"epoch {epoch + 1}: validation loss {val:.4f}")
        if val < best_val:
            best_val, best_state = val, copy.deepcopy(slots.state_dict())
    slots.load_state_dict(best_state)
    history["best_val_loss"] = best_val
    return history


def save_checkpoint(args, config, accelerator, slots, opt, sched, best_val, best_state, history, step, epoch, micro):
    """Main process writes; every rank waits, so no rank runs ahead of a checkpoint that is not on disk yet."""
    if accelerator.is_main_process:
        ckpt.save(args, config or {}, {
            "mode": "llmloss", "modules": slots.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "best_val": best_val, "best_state": best_state, "history": history,
            "step": step, "epoch": epoch, "micro": micro, "accelerator_step": accelerator.step,
            "num_processes": accelerator.num_processes})
    accelerator.wait_for_everyone()


def _step_delay() -> float:
    """Test hook: seconds to sleep after every optimizer step (lets a test kill the process mid-run)."""
    return float(os.environ.get("LLM_STREAMLINE_STEP_DELAY", "0") or 0)


def broadcast_selection(ctx, args, accelerator) -> dict:
    """Score blocks on the main process only and broadcast, so every rank prunes the same block."""
    from accelerate.utils import broadcast_object_list

    box = [None]
    if accelerator.is_main_process:
        calib = D.sample_blocks(ctx.train_blocks, args.cosine_num_data, args.seed)
        box[0] = select_block(ctx.model, calib, args, ctx.device)
    if accelerator.num_processes > 1:
        broadcast_object_list(box)
    return box[0]


def run(argv: list[str] | None = None):
    """Entry point of ``llmloss_entry.py``."""
    model_args, args = parse_args(argv)
    config = as_dict(model_args, args)
    resume = ckpt.load_for_resume(args, config, "llmloss")  # before any model is loaded
    accelerator = make_accelerator(args)
    if resume is not None and resume.get("num_processes", 1) != accelerator.num_processes:
        raise UserError(f"checkpoint was written by {resume.get('num_processes')} processes, this run has "
                        f"{accelerator.num_processes} (the data position is per rank)")
    if accelerator.device.type != "cpu":
        args.device = str(accelerator.device)
    ctx = setup(model_args, args, rank=accelerator.process_index, select=False)
    ctx.selection = broadcast_selection(ctx, args, accelerator)
    best, n, k = ctx.best, args.layer_intervals, args.num_lightweight_layers
    modules = build_lightweight(ctx.model, args.lightweight, best, k, args.seed)
    pruned = assemble(ctx.model, best, n, args.lightweight, modules)
    del ctx.model
    trainable = trainable_parameters(lightweight_slots(pruned, best, k), args.lightweight, get_adapter(pruned))
    record = {**ctx.record, **as_dict(model_args, args), "mode": "llmloss", "best_layer": best,
              "removed_layers": list(range(best + k, best + n + k)), "scores": ctx.selection["scores"],
              "block_influence": ctx.selection["block_influence"], "num_processes": accelerator.num_processes}
    try:
        record["history"] = train_llm(pruned, trainable, ctx.train_blocks, ctx.test_blocks, args, accelerator, best, k,
                                      resume=resume, config=config)
    except NonFiniteLossError as exc:
        record["stopped"] = str(exc)
        raise
    finally:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            out_model = accelerator.unwrap_model(pruned).float()
            slots = lightweight_slots(out_model, best, k)
            out = save_output(out_model, ctx.tokenizer, args.output_dir, record, args.lightweight, slots)
            print(f"saved {out} ({len(get_adapter(out_model).layers(out_model))} layers)", flush=True)
    return args.output_dir
