"""Stream (input, target) hidden-state pairs for MSE training: in RAM when they fit, memory-mapped on disk otherwise.

The original kept every pair in RAM in fp32 (32 MiB per tensor per 2048-token sequence on an 8B model), which
ran into a 1 TB RAM cap (spec bug 11, upstream issue #5). Here the forward pass stops right after the block
(layer best+n), pairs are written batch by batch into a preallocated store, and ``mode="disk"`` uses
``numpy.memmap`` files so peak RSS is one batch of activations, independent of the data size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from llm_streamline.selection import residual_states
from shared_utils.errors import UserError

_NP_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (fallback: 4 GiB)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


class PairStore:
    """``num`` pairs of [T, d] tensors (x = hs[best], y = hs[best+n+1]) plus their [T] attention masks."""

    def __init__(self, num: int, seq_len: int, hidden: int, mode: str = "auto", cache_dir: str | None = None,
                 dtype=torch.float32, memory_fraction: float = 0.25):
        if dtype not in _NP_DTYPES:
            raise UserError(f"hidden-state cache dtype must be float32 or float16, got {dtype}")
        nbytes = 2 * num * seq_len * hidden * torch.finfo(dtype).bits // 8
        if mode == "auto":
            mode = "memory" if nbytes <= memory_fraction * available_memory_bytes() else "disk"
        if mode not in ("memory", "disk"):
            raise UserError(f"hidden_cache must be auto, memory or disk, got '{mode}'")
        self.mode, self.nbytes, self.dtype, self.num = mode, nbytes, dtype, num
        shape = (num, seq_len, hidden)
        if mode == "memory":
            self.x = torch.empty(shape, dtype=dtype)
            self.y = torch.empty(shape, dtype=dtype)
        else:
            root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir())
            try:
                root.mkdir(parents=True, exist_ok=True)
                self.dir = Path(tempfile.mkdtemp(prefix="streamline_hidden_", dir=root))
            except OSError as exc:
                raise UserError(f"hidden-state cache dir {root} is not writable ({exc.strerror})") from None
            npd = _NP_DTYPES[dtype]
            self._xm = np.memmap(self.dir / "x.bin", dtype=npd, mode="w+", shape=shape)
            self._ym = np.memmap(self.dir / "y.bin", dtype=npd, mode="w+", shape=shape)
            self.x = torch.from_numpy(self._xm)
            self.y = torch.from_numpy(self._ym)
        self.mask = torch.ones(num, seq_len, dtype=torch.long)

    def put(self, start: int, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> None:
        end = start + x.shape[0]
        self.x[start:end] = x.to("cpu", self.dtype)
        self.y[start:end] = y.to("cpu", self.dtype)
        if mask is not None:
            self.mask[start:end] = mask.cpu()

    def get(self, idx, device="cpu", dtype=torch.float32):
        """Batch ``idx`` (tensor of indices) as float tensors on ``device``."""
        idx = torch.as_tensor(idx)
        x = self.x[idx].to(device=device, dtype=dtype)
        y = self.y[idx].to(device=device, dtype=dtype)
        return x, y, self.mask[idx].to(device)

    def __len__(self) -> int:
        return self.num

    def close(self) -> None:
        if self.mode == "disk":
            del self.x, self.y, self._xm, self._ym
            for name in ("x.bin", "y.bin"):
                try:
                    os.unlink(self.dir / name)
                except OSError:
                    pass
            try:
                self.dir.rmdir()
            except OSError:
                pass


@torch.no_grad()
def collect_pairs(model, batch_list: list[dict], best: int, n: int, mode: str = "auto", cache_dir: str | None = None,
                  dtype=torch.float32, device="cpu", desc: str = "hidden states") -> PairStore:
    """Run the original model up to layer best+n on every batch and store (hs[best], hs[best+n+1]) pairs."""
    total = sum(b["input_ids"].shape[0] for b in batch_list)
    if total == 0:
        raise UserError("no sequences to collect hidden states from")
    seq_len = batch_list[0]["input_ids"].shape[1]
    store = PairStore(total, seq_len, model.config.hidden_size, mode, cache_dir, dtype)
    pos = 0
    for batch in tqdm(batch_list, desc=desc, leave=False):
        mask = batch.get("attention_mask")
        states = residual_states(model, batch["input_ids"].to(device), None if mask is None else mask.to(device),
                                 indices=(best, best + n + 1))
        store.put(pos, states[best], states[best + n + 1], mask)
        pos += batch["input_ids"].shape[0]
    return store
