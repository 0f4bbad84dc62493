"""Training loop (plain PyTorch): AdamW, linear warm-up then constant LR, grad clipping, EMA, validation
NELBO, atomic resumable checkpoints (resume gives the same result as an uninterrupted run), NaN guard.

python main.py mode=train model=micro data.tokenizer=char data.train_path=tests/fixtures/hier_gsm8k.json
"""

from __future__ import annotations

import math
import os

import torch
from tqdm import tqdm

from hier_bd3lm.config import Config, to_dict
from hier_bd3lm.data import Encoded
from hier_bd3lm.ema import EMA
from hier_bd3lm.evaluate import evaluate_nll
from hier_bd3lm.guards import check_output_dir, check_resume_config, load_json_file, load_torch_file
from hier_bd3lm.pipeline import build_model, checkpoint_path, encode, gsm8k_records, load_records, record_texts  # noqa: F401  (re-exported: scripts and tests import them from here)
from hier_bd3lm.tokenizer import fit_tokenizer
from shared_utils.errors import NonFiniteLossError, UserError
from shared_utils.models import pick_device
from shared_utils.runs import RunDir, atomic_torch_save, atomic_write_json, seed_everything


def batches_of(enc: Encoded, batch_size: int, device):
    for i in range(0, len(enc), batch_size):
        yield (enc.input_ids[i:i + batch_size].to(device), enc.loss_mask[i:i + batch_size].to(device),
               enc.content_mask[i:i + batch_size].to(device), enc.segment_ids[i:i + batch_size].to(device))


class Order:
    """Deterministic epoch permutations of the *global* batch, so a resumed run reads the same batches and data
    parallel ranks split one global batch (no example twice per epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, idx: int = 0):
        if n < batch_size:
            raise UserError(f"only {n} training examples for loader.batch_size {batch_size}")
        self.n, self.bs, self.seed, self.epoch, self.idx = n, batch_size, seed, epoch, idx

    def next(self) -> torch.Tensor:
        if (self.idx + 1) * self.bs > self.n:
            self.epoch, self.idx = self.epoch + 1, 0
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        out = perm[self.idx * self.bs:(self.idx + 1) * self.bs]
        self.idx += 1
        return out


def lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


# ------------------------------------------------------------------------------------------------ loop
def train(cfg: Config) -> dict:
    rank, world, owns_group = _dist_init(cfg)
    seed_everything(cfg.seed, rank=rank)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = pick_device(cfg.trainer.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    ckpt_file = checkpoint_path(cfg)
    check_output_dir(cfg.checkpointing.save_dir, "checkpointing.save_dir")
    resume = cfg.checkpointing.resume_from_ckpt and ckpt_file.exists()
    sidecar = ckpt_file.with_suffix(".json")  # the checkpoint's config as JSON: checked before the (large) load
    if resume and sidecar.is_file():
        check_resume_config(load_json_file(sidecar, "checkpoint config").get("config", {}), to_dict(cfg),
                            where=str(ckpt_file))
    state = load_torch_file(ckpt_file) if resume else None
    if state is not None:
        if "config" not in state or "model" not in state:
            raise UserError(f"checkpoint {ckpt_file} is not a hier_bd3lm training checkpoint")
        check_resume_config(state["config"], to_dict(cfg), where=str(ckpt_file))
    train_recs, valid_recs = load_records(cfg)
    pre = _read_pretrained(cfg.training.from_pretrained) if state is None and cfg.training.from_pretrained else None
    if state is not None or pre is not None:  # the vocabulary must match the weights
        from hier_bd3lm.tokenizer import tokenizer_from_state

        tok = tokenizer_from_state((state or pre)["tokenizer"])
    else:
        tok = fit_tokenizer(cfg.data.tokenizer, record_texts(train_recs), cfg.data.max_vocab)
    train_enc, valid_enc = encode(cfg, train_recs, tok), encode(cfg, valid_recs, tok)
    model = build_model(cfg, tok.vocab_size, tok.mask_id).to(device)
    opt = torch.optim.AdamW(model.backbone.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                            eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.lr_scheduler.num_warmup_steps))
    ema = EMA(model.backbone.parameters(), cfg.training.ema)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    global_bs = cfg.loader.batch_size * world  # loader.batch_size is per device, as in bd3lms
    order = Order(len(train_enc), global_bs, cfg.seed)
    step = 0
    if state is not None:
        _load_state(state, model, opt, sched, ema, noise_gen, order, cfg)
        step = state["step"]
    elif pre is not None:
        try:
            model.load_state_dict(pre["model"])
        except RuntimeError as exc:
            raise UserError(f"training.from_pretrained does not match this config: {str(exc).splitlines()[0]}") from None
        ema.load_state_dict(pre["ema"])
    main_rank = rank == 0  # logging, validation and checkpoints happen on rank 0 only
    run = RunDir(cfg.checkpointing.save_dir) if main_rank else None
    if main_rank:
        run.write_config(to_dict(cfg))
        run.write_meta(seed=cfg.seed, world_size=world, global_batch_size=global_bs)
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    last_val = None
    bar = tqdm(total=cfg.trainer.max_steps, initial=step, desc=f"train {cfg.algo.name}", dynamic_ncols=True,
               disable=not main_rank)
    lo = rank * cfg.loader.batch_size
    while step < cfg.trainer.max_steps:
        micro = []
        for _ in range(cfg.trainer.accumulate_grad_batches):
            idx = order.next()[lo:lo + cfg.loader.batch_size]  # this rank's share of the global batch
            micro.append((train_enc.input_ids[idx].to(device), train_enc.loss_mask[idx].to(device)))
        try:
            total, grad_norm = train_step(model, opt, sched, ema, micro, noise_gen, cfg.trainer.gradient_clip_val,
                                          ddp=ddp, rank=rank, world=world)
        except NonFiniteLossError:
            raise NonFiniteLossError(f"non-finite loss at step {step + 1}; last good checkpoint kept at {ckpt_file}") from None
        step += 1
        bar.update(1)
        if main_rank and (step % cfg.trainer.log_every_n_steps == 0 or step == 1):
            run.log(step, loss=total, lr=sched.get_last_lr()[0], grad_norm=float(grad_norm))
            bar.set_postfix(loss=f"{total:.3f}")
        if step % cfg.trainer.val_check_interval == 0 or step == cfg.trainer.max_steps:
            rng = _all_rng_states(world)
            if main_rank:
                last_val = _validate(cfg, model, ema, valid_enc, device)
                run.log(step, **{f"val/{k}": v for k, v in last_val.items()})
                _save(ckpt_file, cfg, model, opt, sched, ema, noise_gen, order, step, tok, rng)
            if world > 1:
                torch.distributed.barrier()
    bar.close()
    if last_val is None and main_rank:  # resumed at max_steps
        last_val = _validate(cfg, model, ema, valid_enc, device)
    if world > 1:
        _check_ranks_agree(model)
        if owns_group:
            torch.distributed.destroy_process_group()
    return {"step": step, "checkpoint": str(ckpt_file), "rank": rank, "world_size": world, **(last_val or {})}


def _dist_init(cfg) -> tuple[int, int, bool]:
    """(rank, world size, whether we created the process group) under torchrun (WORLD_SIZE > 1), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        use_cuda = cfg.trainer.device in ("cuda", "auto") and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), owns


def _all_rng_states(world: int):
    """Every rank's torch RNG state (dropout streams differ per rank), gathered for rank 0's checkpoint."""
    state = torch.get_rng_state()
    if world == 1:
        return state
    out = [None] * world
    torch.distributed.all_gather_object(out, state)
    return out


def _check_ranks_agree(model) -> None:
    """Data parallel sanity check: every rank ends with the same weights (one checksum per rank, compared)."""
    s = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    out = [torch.zeros_like(s) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(out, s)
    if not all(torch.equal(o, out[0]) for o in out):
        raise RuntimeError(f"data-parallel ranks disagree on the weights: checksums {[float(o) for o in out]}")


def train_step(model, opt, sched, ema, micro_batches, noise_gen=None, clip: float = 1.0, autocast_dtype=None,
               ddp=None, rank: int = 0, world: int = 1):
    """One optimizer step over `micro_batches` [(x0, loss_mask), ...] (gradient accumulation): the training
    loop's step, also timed by the benchmark and the GPU check. Returns (loss, grad_norm).

    Data parallel (`ddp` = the DistributedDataParallel wrapper, `world` > 1): each rank holds its share of the
    global batch; the noise is drawn for the global batch and sliced, the loss is normalised by the global
    loss-token count and scaled by `world` (DDP averages gradients), so the step equals one process with the
    whole batch. The reported loss is this rank's share (summed over ranks it is the global loss)."""
    model.train()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    q = model.layout.question_len
    for x0, lm in micro_batches:
        rows = denom = None
        if world > 1:
            denom = lm[:, q:].sum().to(torch.float64)
            torch.distributed.all_reduce(denom)
            rows = (rank * x0.shape[0], world * x0.shape[0])
        with torch.autocast(x0.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            fwd = ddp if ddp is not None else model.loss
            loss = fwd(x0, lm, generator=noise_gen, rows=rows, denom=denom) / len(micro_batches)
            if world > 1:
                loss = loss * world
        if not torch.isfinite(loss):
            raise NonFiniteLossError("non-finite loss")
        loss.backward()
        total += loss.item() / world
    grad_norm = torch.nn.utils.clip_grad_norm_(model.backbone.parameters(), clip)
    opt.step()
    if sched is not None:
        sched.step()
    if ema is not None:
        ema.update()
    return total, grad_norm


def _validate(cfg, model, ema, valid_enc, device) -> dict:
    ema.store_and_copy()
    try:
        if cfg.algo.var_min and cfg.algo.clip_search_widths and model.algo == "bd3lm":
            model.eval()
            batches = [(x, lm) for x, lm, _, _ in batches_of(valid_enc, cfg.loader.eval_batch_size, device)]
            model.clip_search(batches, cfg.algo.clip_search_widths, cfg.algo.clip_search_delta, cfg.algo.fix_clipping)
        out = evaluate_nll(model, valid_enc, cfg.loader.eval_batch_size, mc_samples=1, seed=cfg.seed, device=device,
                           limit_batches=cfg.trainer.limit_val_batches)
    finally:
        ema.restore()
    return {"nll": out["nll_per_loss_token"], "content_nll": out["nll_per_content_token"],
            "eps_min": float(model.sampling_eps_min), "eps_max": float(model.sampling_eps_max)}


def _save(path, cfg, model, opt, sched, ema, noise_gen, order, step, tok, torch_rng=None):
    atomic_torch_save({
        "step": step, "config": to_dict(cfg), "tokenizer": tok.state(), "model": model.state_dict(),
        "ema": ema.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "noise_rng": noise_gen.get_state(), "torch_rng": torch.get_rng_state() if torch_rng is None else torch_rng,
        "order": {"epoch": order.epoch, "idx": order.idx}, "vocab_size": tok.vocab_size,
    }, path)
    atomic_write_json(path.with_suffix(".json"), {"step": step, "config": to_dict(cfg)})


def _load_state(state, model, opt, sched, ema, noise_gen, order, cfg):
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {checkpoint_path(cfg)} does not match this config: {str(exc).splitlines()[0]}") from None
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    ema.load_state_dict(state["ema"])
    noise_gen.set_state(state["noise_rng"])
    rng = state["torch_rng"]
    if isinstance(rng, list):  # saved by a data-parallel run: one state per rank
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if len(rng) != (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1):
            raise UserError(f"checkpoint {checkpoint_path(cfg)} was written by {len(rng)} processes; resume it with "
                            f"the same number (torchrun --nproc_per_node {len(rng)})")
        rng = rng[rank]
    torch.set_rng_state(rng)
    order.epoch, order.idx = state["order"]["epoch"], state["order"]["idx"]


def _read_pretrained(path):
    return load_torch_file(path, "training.from_pretrained checkpoint")


def initial_loss_reference(vocab_size: int) -> float:
    """ln(V - 1): the first loss of a zero-initialised output layer (MASK excluded by SUBS)."""
    return math.log(vocab_size - 1)
