"""Slot layout of one example ([Question | Plan | Execution]); torch-free so configs validate without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Slot lengths of one example; `plan_len = 0` is the Flat layout, `question_len = 0` plain BD3-LM."""

    question_len: int
    plan_len: int
    exec_len: int
    block_size: int

    def __post_init__(self):
        # A block that straddled the plan/exec boundary would let plan tokens attend to execution tokens
        # (and a ragged last block breaks the block arithmetic), so such layouts are refused outright.
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if min(self.question_len, self.plan_len, self.exec_len) < 0:
            raise ValueError("segment lengths must be >= 0")
        for name, n in (("plan_len", self.plan_len), ("exec_len", self.exec_len)):
            if n % self.block_size:
                raise ValueError(f"block_size {self.block_size} does not divide {name} {n}: plan and execution "
                                 f"tokens would share a block; use a block size that divides both segments")

    @property
    def gen_len(self) -> int:
        return self.plan_len + self.exec_len

    @property
    def total_len(self) -> int:
        return self.question_len + self.gen_len

    @property
    def n_blocks(self) -> int:
        return self.gen_len // self.block_size

    def segments(self) -> list[tuple[str, int, int]]:
        """(name, start, length) of the generated segments in natural order."""
        out, start = [], self.question_len
        for name, n in (("plan", self.plan_len), ("exec", self.exec_len)):
            if n:
                out.append((name, start, n))
                start += n
        return out
