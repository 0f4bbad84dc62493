"""Tokenizers with explicit, distinct PAD / BOS / EOS / UNK / MASK ids (pitfall P1: PAD must not be MASK).

- `CharTokenizer`: characters seen in the training texts (tests, tiny runs; no model needed).
- `CompactTokenizer`: a Hugging Face tokenizer (default: the embedded SmolLM2-135M-Instruct; `gpt2` from the
  Hub or its cache) whose vocabulary is compacted to the ids seen in the training texts, so the output layer
  stays small on CPU (documented deviation). Unseen ids map to UNK.
Ids: PAD=0, BOS=1, EOS=2 (end of segment), UNK=3, content ids, then MASK = vocab_size - 1 (as in bd3lms,
where MASK is the extra last id).

python -m pytest tests/test_data.py
"""

from __future__ import annotations

from collections.abc import Iterable

from shared_utils.errors import UserError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


class _Base:
    pad_id, bos_id, eos_id, unk_id = PAD, BOS, EOS, UNK

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.n_content + 1

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS and stop_at_eos:
                break
            if i >= len(SPECIALS) and i != self.mask_id:
                out.append(i)
        return self._decode_content(out)


class CharTokenizer(_Base):
    def __init__(self, chars: Iterable[str]):
        self.chars = sorted(set(chars))
        self.n_content = len(self.chars)
        self._id = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharTokenizer:
        return cls("".join(texts))

    def encode(self, text: str) -> list[int]:
        return [self._id.get(c, UNK) for c in text]

    def _decode_content(self, ids):
        return "".join(self.chars[i - len(SPECIALS)] for i in ids)

    def state(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}


class CompactTokenizer(_Base):
    def __init__(self, base_name: str, kept: Iterable[int], base=None):
        self.base_name = base_name
        self._memo = None
        self.base = base if base is not None else load_base_tokenizer(base_name)
        self.kept = sorted(set(int(i) for i in kept))
        self.n_content = len(self.kept)
        self._id = {b: i + len(SPECIALS) for i, b in enumerate(self.kept)}

    @classmethod
    def fit(cls, base_name: str, texts: Iterable[str], max_vocab: int | None = None) -> CompactTokenizer:
        """Keep the base ids seen in `texts` (the `max_vocab` most frequent when set; the rest become UNK)."""
        from collections import Counter

        base = load_base_tokenizer(base_name)
        texts = list(texts)
        counts = Counter()
        memo = {}
        for s in range(0, len(texts), 4096):  # batched: one call per chunk is far faster than one per text
            chunk = texts[s:s + 4096]
            for t, ids in zip(chunk, base(chunk, add_special_tokens=False)["input_ids"]):
                counts.update(ids)
                memo[t] = ids
        kept = [i for i, _ in counts.most_common(max_vocab or None)]  # None / 0 = every id seen
        tok = cls(base_name, kept, base)
        tok._memo = memo  # the training texts are encoded again right after fitting
        return tok

    def encode(self, text: str) -> list[int]:
        ids = self._memo.get(text) if self._memo else None
        if ids is None:
            ids = self.base.encode(text, add_special_tokens=False)
        return [self._id.get(i, UNK) for i in ids]

    def _decode_content(self, ids):
        return self.base.decode([self.kept[i - len(SPECIALS)] for i in ids])

    def state(self) -> dict:
        return {"type": "compact", "base": self.base_name, "kept": self.kept}


def load_base_tokenizer(name: str):
    from shared_utils.models import load_tokenizer

    return load_tokenizer(name)


def fit_tokenizer(name: str, texts: list[str], max_vocab: int | None = None):
    """`char` or a HF tokenizer name (`smollm2-135m`, `gpt2`, a local dir), compacted to `texts`."""
    if name == "char":
        return CharTokenizer.fit(texts)
    return CompactTokenizer.fit(name, texts, max_vocab)


def tokenizer_from_state(state: dict):
    if state.get("type") == "char":
        return CharTokenizer(state["chars"])
    if state.get("type") == "compact":
        return CompactTokenizer(state["base"], state["kept"])
    raise UserError(f"unknown tokenizer state type {state.get('type')!r} in checkpoint")
