"""torch.distributed for the manual loop (torchrun): process group, rank, world size, and where each rank reads.

Launch: ``torchrun --nproc_per_node N scripts/train_superrelora.py --config ...`` (gloo on CPU, NCCL on CUDA).
``batch_size`` is per rank (as HF's per_device_train_batch_size): an update reads ``batch_size * N`` consecutive
rows per micro-batch, rank r takes its r-th slice, gradients are averaged by DDP, and the loss is normalised by
the token count of the whole global window, so N ranks with batch B/N give the same update as 1 rank with B.
Merges run on every rank at the same update on identical weights (same seed on every rank, so ReLoRA's re-init
draws the same A), and only rank 0 writes logs, checkpoints and exports.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def maybe_init(device_pref: str = "auto") -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and device_pref != "cpu"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return True


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def mean_across(value: float, device) -> float:
    """Average a Python float over ranks (logged losses)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()
