"""MSE-loss training: regress the block's output hidden state from its input with the lightweight network alone.

    python mseloss_entry.py --model_name smollm2-135m --data_path embedded --seq_len 128 --train_num_data 64 \
        --cosine_num_data 16 --num_test_blocks 8 --gradient_accumulation_step 2 --output_dir runs/mse

Faithful to train_mseloss.py / train_lightweightnetwork.py (spec 2.6): AdamW(lr, wd), nn.MSELoss / GA, an
optimizer step every ``gradient_accumulation_step`` micro-batches after clipping to 5, validation MSE before
training and after every epoch, the best state restored at the end. Fixed: the layer runs causally with RoPE
(bug 4), the best state is a real copy and always exists (bug 6), hidden states stream through a bounded
store (bug 11), everything is seeded (bug 5).
"""

from __future__ import annotations

import copy
import math
import os
import time

import torch
from tqdm.auto import tqdm

from llm_streamline import checkpoint as ckpt
from llm_streamline import data as D
from llm_streamline.adapters import get_adapter
from llm_streamline.args import as_dict, parse_args
from llm_streamline.hidden_cache import collect_pairs
from llm_streamline.lightweight import build_lightweight, run_lightweight, trainable_parameters
from llm_streamline.pipeline import assemble, save_output, setup
from llm_streamline.scheduler import cosine_schedule, horizons
from shared_utils.errors import NonFiniteLossError, UserError


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, start: int = 0) -> torch.Tensor:
    """Mean squared error over the elements of valid tokens at positions >= ``start`` (= nn.MSELoss when
    nothing is padded and start = 0)."""
    pred, target = pred[:, start:], target[:, start:]
    mask = None if mask is None else mask[:, start:]
    if mask is None:
        return torch.nn.functional.mse_loss(pred, target)
    m = mask.to(pred.dtype)[..., None]
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1)


@torch.no_grad()
def validation_mse(model, modules, kind: str, store, batch_size: int, device, start: int = 0) -> float:
    total, count = 0.0, 0
    for i in range(0, len(store), batch_size):
        x, y, mask = store.get(torch.arange(i, min(i + batch_size, len(store))), device)
        total += float(masked_mse(run_lightweight(model, modules, kind, x, mask), y, mask, start)) * x.shape[0]
        count += x.shape[0]
    return total / max(1, count)


class LightweightForward(torch.nn.Module):
    """The lightweight modules as one module (what DDP wraps in a multi-process run); the frozen model that supplies
    RoPE and the adapter is held outside the module tree, so DDP neither broadcasts nor tracks it."""

    def __init__(self, model, modules, kind: str):
        super().__init__()
        self.modules_ = modules
        self.kind = kind
        object.__setattr__(self, "_model", model)

    def forward(self, x, mask):
        return run_lightweight(self._model, self.modules_, self.kind, x, mask)


def mse_micro_step(model, modules, kind: str, x, y, mask, start: int, accumulation: int, forward=None) -> torch.Tensor:
    """Forward + backward of one micro-batch (loss / accumulation); returns the unscaled loss. ``forward(x, mask)``
    replaces the direct call of the modules (a DDP-wrapped :class:`LightweightForward`)."""
    pred = forward(x, mask) if forward is not None else run_lightweight(model, modules, kind, x, mask)
    loss = masked_mse(pred, y, mask, start)
    if not torch.isfinite(loss):
        raise NonFiniteLossError("non-finite MSE loss")
    (loss / accumulation).backward()
    return loss


def _step_delay() -> float:
    """Test hook: seconds to sleep after every optimizer step (lets a test kill the process mid-run)."""
    return float(os.environ.get("LLM_STREAMLINE_STEP_DELAY", "0") or 0)


def train_mse(model, modules, kind: str, train_store, test_store, args, device, log=print, resume: dict | None = None,
              config: dict | None = None, accelerator=None) -> dict:
    """Train ``modules`` on the stored pairs; returns the loss history. Restores the best validation state.

    With ``args.save_steps`` a checkpoint is written every that many optimizer steps; ``resume`` (a checkpoint
    from :mod:`llm_streamline.checkpoint`) continues exactly where it was written.
    """
    model.requires_grad_(False)
    modules.requires_grad_(False)
    params = trainable_parameters(modules, kind, get_adapter(model))
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    # several processes: each global micro-batch of batch_size x world sequences is split across the ranks (no
    # sequence twice per epoch) and DDP averages the gradients; one process: exactly the original loop
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    forward = accelerator.prepare(LightweightForward(model, modules, kind)) if accelerator is not None else None
    main = rank == 0
    if world == 1:
        loader_len = math.ceil(len(train_store) / args.batch_size)
    else:  # every rank must take part in every step: an incomplete last global micro-batch is dropped
        loader_len = len(train_store) // (args.batch_size * world)
        if loader_len == 0:
            raise UserError(f"{len(train_store)} training sequences are fewer than batch_size x processes "
                            f"({args.batch_size} x {world})")
    warmup, total = horizons(loader_len, args.epoches, args.gradient_accumulation_step, "mse", args.lr_schedule,
                             args.warmup_ratio)
    sched = cosine_schedule(opt, warmup, total, args.lr, args.min_lr)
    clip = args.max_grad_norm if args.max_grad_norm >= 0 else 5.0
    modules.eval()  # no dropout in these layers; eval() keeps them deterministic
    step, start_epoch, start_micro = 0, 0, 0
    if resume is None:
        best_val = validation_mse(model, modules, kind, test_store, args.batch_size, device, args.mse_loss_start)
        best_state = copy.deepcopy(modules.state_dict())  # a real copy (the original kept references)
        history = {"val_mse": [best_val], "train_mse": [], "lr": []}
        if main:
            log(f"validation MSE before training: {best_val:.6f}")
    else:
        modules.load_state_dict(resume["modules"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        best_val, best_state, history = resume["best_val"], resume["best_state"], resume["history"]
        step, start_epoch, start_micro = resume["step"], resume["epoch"], resume["micro"]
        if main:
            log(f"resumed at epoch {start_epoch + 1}, micro-batch {start_micro} ({step} optimizer steps done)")
    for epoch in range(start_epoch, args.epoches):
        gen = torch.Generator().manual_seed(args.seed + epoch)
        order = torch.randperm(len(train_store), generator=gen)
        first = start_micro if epoch == start_epoch else 0
        bar = tqdm(range(first, loader_len), desc=f"mse epoch {epoch + 1}", leave=False, disable=not main)
        for i in bar:
            lo = i * args.batch_size * world + rank * args.batch_size
            x, y, mask = train_store.get(order[lo : min(lo + args.batch_size, (i + 1) * args.batch_size * world)],
                                         device)
            try:
                loss = mse_micro_step(model, modules, kind, x, y, mask, args.mse_loss_start,
                                      args.gradient_accumulation_step, forward)
            except NonFiniteLossError:
                modules.load_state_dict(best_state)
                raise NonFiniteLossError(f"non-finite MSE loss at epoch {epoch + 1} micro-batch {i + 1}; "
                                         "the best state so far was kept") from None
            history["train_mse"].append(loss.item())
            if (i + 1) % args.gradient_accumulation_step == 0 or i + 1 == loader_len:
                torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                history["lr"].append(sched.get_last_lr()[0])
                if getattr(args, "save_steps", 0) and step % args.save_steps == 0:
                    if main:
                        ckpt.save(args, config or {}, {
                            "mode": "mseloss", "modules": modules.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "best_val": best_val, "best_state": best_state,
                            "history": history, "step": step, "epoch": epoch, "micro": i + 1, "num_processes": world})
                    if accelerator is not None:
                        accelerator.wait_for_everyone()
                time.sleep(_step_delay())
            bar.set_postfix(mse=f"{loss.item():.4f}")
        val = validation_mse(model, modules, kind, test_store, args.batch_size, device, args.mse_loss_start)
        history["val_mse"].append(val)
        if main:
            log(f"epoch {epoch + 1}: validation MSE {val:.6f} ({step} optimizer steps)")
        if val < best_val:
            best_val, best_state = val, copy.deepcopy(modules.state_dict())
    modules.load_state_dict(best_state)
    history["best_val_mse"] = best_val
    return history


def run(argv: list[str] | None = None):
    """Entry point of ``mseloss_entry.py``: select, collect, train, assemble, save."""
    model_args, args = parse_args(argv)
    config = as_dict(model_args, args)
    resume = ckpt.load_for_resume(args, config, "mseloss")  # before any model is loaded
    accelerator = distributed_accelerator(args)
    world = accelerator.num_processes if accelerator is not None else 1
    if resume is not None and resume.get("num_processes", 1) != world:
        raise UserError(f"checkpoint was written by {resume.get('num_processes', 1)} processes, this run has {world}")
    if accelerator is None:
        ctx = setup(model_args, args)
    else:  # selection on the main process, broadcast (as the LLM-loss entry)
        from llm_streamline.llm_train import broadcast_selection

        if accelerator.device.type != "cpu":
            args.device = str(accelerator.device)
        ctx = setup(model_args, args, rank=accelerator.process_index, select=False)
        ctx.selection = broadcast_selection(ctx, args, accelerator)
    main = accelerator is None or accelerator.is_main_process
    best, n, k = ctx.best, args.layer_intervals, args.num_lightweight_layers
    model, device = ctx.model, ctx.device
    modules = build_lightweight(model, args.lightweight, best, k, args.seed).to(device)
    cache_dtype = torch.float16 if args.cache_dtype == "float16" else torch.float32
    cache_dir = args.hidden_cache_dir or None
    span = n + k - 1  # residual index best+span+... : target is hs[best + n + k]
    test_store = collect_pairs(model, D.batches(ctx.test_blocks, args.batch_size), best, span, args.hidden_cache,
                               cache_dir, cache_dtype, device, "hidden states (test)")
    train_store = collect_pairs(model, D.batches(ctx.train_blocks, args.batch_size), best, span, args.hidden_cache,
                                cache_dir, cache_dtype, device, "hidden states (train)")
    if main:
        print(f"hidden-state cache: {train_store.mode}, {(train_store.nbytes + test_store.nbytes) / 2**20:.1f} MiB",
              flush=True)
    record = {**ctx.record, **as_dict(model_args, args), "mode": "mseloss", "best_layer": best,
              "removed_layers": list(range(best + k, best + n + k)), "scores": ctx.selection["scores"],
              "block_influence": ctx.selection["block_influence"], "hidden_cache": train_store.mode,
              "num_processes": world}
    try:
        history = train_mse(model, modules, args.lightweight, train_store, test_store, args, device, resume=resume,
                            config=config, accelerator=accelerator)
    except NonFiniteLossError as exc:
        record["stopped"] = str(exc)
        if main:
            save_output(assemble(model, best, n, args.lightweight, modules), ctx.tokenizer, args.output_dir, record,
                        args.lightweight, modules)
        raise
    finally:
        train_store.close()
        test_store.close()
    record["history"] = history
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if not main:
        return args.output_dir
    pruned = assemble(model, best, n, args.lightweight, modules)
    out = save_output(pruned, ctx.tokenizer, args.output_dir, record, args.lightweight, modules)
    print(f"saved {out} ({pruned.config.num_hidden_layers} layers)", flush=True)
    return out


def distributed_accelerator(args):
    """An Accelerator (fp32) when launched with several processes (torchrun / accelerate launch), else None: a
    single process runs exactly the original loop."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    return Accelerator(mixed_precision="no", cpu=cpu)
