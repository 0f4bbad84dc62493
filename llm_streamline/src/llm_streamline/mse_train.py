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

import torch
from tqdm.auto import tqdm

from llm_streamline import data as D
from llm_streamline.adapters import get_adapter
from llm_streamline.args import as_dict, parse_args
from llm_streamline.hidden_cache import collect_pairs
from llm_streamline.lightweight import build_lightweight, run_lightweight, trainable_parameters
from llm_streamline.pipeline import assemble, save_output, setup
from llm_streamline.scheduler import cosine_schedule, horizons
from shared_utils.errors import NonFiniteLossError


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


def train_mse(model, modules, kind: str, train_store, test_store, args, device, log=print) -> dict:
    """Train ``modules`` on the stored pairs; returns the loss history. Restores the best validation state."""
    model.requires_grad_(False)
    modules.requires_grad_(False)
    params = trainable_parameters(modules, kind, get_adapter(model))
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    loader_len = math.ceil(len(train_store) / args.batch_size)
    warmup, total = horizons(loader_len, args.epoches, args.gradient_accumulation_step, "mse", args.lr_schedule,
                             args.warmup_ratio)
    sched = cosine_schedule(opt, warmup, total, args.lr, args.min_lr)
    clip = args.max_grad_norm if args.max_grad_norm >= 0 else 5.0
    modules.eval()  # no dropout in these layers; eval() keeps them deterministic
    best_val = validation_mse(model, modules, kind, test_store, args.batch_size, device, args.mse_loss_start)
    best_state = copy.deepcopy(modules.state_dict())  # a real copy (the original kept references)
    history = {"val_mse": [best_val], "train_mse": [], "lr": []}
    log(f"validation MSE before training: {best_val:.6f}")
    step = 0
    for epoch in range(args.epoches):
        gen = torch.Generator().manual_seed(args.seed + epoch)
        order = torch.randperm(len(train_store), generator=gen)
        bar = tqdm(range(loader_len), desc=f"mse epoch {epoch + 1}", leave=False)
        for i in bar:
            x, y, mask = train_store.get(order[i * args.batch_size : (i + 1) * args.batch_size], device)
            loss = masked_mse(run_lightweight(model, modules, kind, x, mask), y, mask, args.mse_loss_start)
            if not torch.isfinite(loss):
                modules.load_state_dict(best_state)
                raise NonFiniteLossError(f"non-finite MSE loss at epoch {epoch + 1} micro-batch {i + 1}; "
                                         "the best state so far was kept")
            (loss / args.gradient_accumulation_step).backward()
            history["train_mse"].append(loss.item())
            if (i + 1) % args.gradient_accumulation_step == 0 or i + 1 == loader_len:
                torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                history["lr"].append(sched.get_last_lr()[0])
            bar.set_postfix(mse=f"{loss.item():.4f}")
        val = validation_mse(model, modules, kind, test_store, args.batch_size, device, args.mse_loss_start)
        history["val_mse"].append(val)
        log(f"epoch {epoch + 1}: validation MSE {val:.6f} ({step} optimizer steps)")
        if val < best_val:
            best_val, best_state = val, copy.deepcopy(modules.state_dict())
    modules.load_state_dict(best_state)
    history["best_val_mse"] = best_val
    return history


def run(argv: list[str] | None = None):
    """Entry point of ``mseloss_entry.py``: select, collect, train, assemble, save."""
    model_args, args = parse_args(argv)
    ctx = setup(model_args, args)
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
    print(f"hidden-state cache: {train_store.mode}, {(train_store.nbytes + test_store.nbytes) / 2**20:.1f} MiB", flush=True)
    record = {**ctx.record, **as_dict(model_args, args), "mode": "mseloss", "best_layer": best,
              "removed_layers": list(range(best + k, best + n + k)), "scores": ctx.selection["scores"],
              "block_influence": ctx.selection["block_influence"], "hidden_cache": train_store.mode}
    try:
        history = train_mse(model, modules, args.lightweight, train_store, test_store, args, device)
    except NonFiniteLossError as exc:
        record["stopped"] = str(exc)
        save_output(assemble(model, best, n, args.lightweight, modules), ctx.tokenizer, args.output_dir, record,
                    args.lightweight, modules)
        raise
    finally:
        train_store.close()
        test_store.close()
    record["history"] = history
    pruned = assemble(model, best, n, args.lightweight, modules)
    out = save_output(pruned, ctx.tokenizer, args.output_dir, record, args.lightweight, modules)
    print(f"saved {out} ({pruned.config.num_hidden_layers} layers)", flush=True)
    return out
