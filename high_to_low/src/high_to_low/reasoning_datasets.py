"""The three datasets of the original (GSM8K no-CoT, multi-step arithmetic, parity) and the prompt format.

Every item is ``{"instruction", "input", "output"}``; the model sees
``"Question: " + instruction + "\\nInput: " + input + "\\nAnswer"`` and is trained on ``": " + output``.
Synthetic data are generated from a seed (train 42, test 1453, valid 2025 as in the original) and can be
written to ``train.txt`` / ``valid.txt`` / ``test.txt`` in the original's ``question||#### answer`` format:

    python -m high_to_low.reasoning_datasets --dataset_name parity --out_dir data/parity --num_train 1000
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import random
import re
from pathlib import Path

from shared_utils.errors import UserError, cli_main

DATASETS = ("gsm8k", "multi-step-arithmetic", "parity")
INSTRUCTIONS = {
    "gsm8k": "Answer the math question.",
    "multi-step-arithmetic": "Evaluate this expression modulo 10.",
    "parity": "Output the parity of this sequence.",
}
SEEDS = {"train": 42, "test": 1453, "valid": 2025}
DEFAULT_SIZES = {"train": 384_000, "test": 1_000, "valid": 1_000}
TRAIN_FILES = ("train_shuffled.txt", "train.txt")


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise UserError(f"unknown --dataset_name '{name}' (choose from {', '.join(DATASETS)})")
    return name


def prompt_text(item: dict) -> str:
    return "Question: " + item["instruction"] + "\nInput: " + item["input"] + "\nAnswer"


def answer_text(item: dict) -> str:
    return ": " + item["output"]


# ----------------------------------------------------------------------------------------------- parity
def parity_example(rng: random.Random, seq_len: int, min_len: int = 1) -> dict:
    """n ~ U{min_len..seq_len} fair bits, each followed by a space; output = sum mod 2."""
    n = rng.randint(min_len, seq_len)
    bits = [rng.randint(0, 1) for _ in range(n)]
    return {"instruction": INSTRUCTIONS["parity"], "input": "".join(f"{b} " for b in bits),
            "output": str(sum(bits) % 2)}


# --------------------------------------------------------------------------------- multi-step arithmetic
def prufer_to_edges(code: list[int], n: int) -> list[tuple[int, int]]:
    """Decode a Prüfer code (length n - 2 over 0..n-1) into the n - 1 edges of a labelled tree."""
    degree = [1] * n
    for x in code:
        degree[x] += 1
    leaves = [i for i in range(n) if degree[i] == 1]
    heapq.heapify(leaves)
    edges = []
    for x in code:
        leaf = heapq.heappop(leaves)
        edges.append((leaf, x))
        degree[x] -= 1
        if degree[x] == 1:
            heapq.heappush(leaves, x)
    edges.append((heapq.heappop(leaves), heapq.heappop(leaves)))
    return edges


def _expr(node: int, children: dict, attrs: list, rng: random.Random) -> str:
    value, negative, op = attrs[node]
    kids = children.get(node, [])
    if not kids:
        return ("-" if negative else "") + str(value)
    parts = [_expr(k, children, attrs, rng) for k in kids] + [str(value)]
    rng.shuffle(parts)
    return ("-" if negative else "") + "(" + f" {op} ".join(parts) + ")"


def arithmetic_example(rng: random.Random, max_n: int = 6, min_n: int = 1) -> dict:
    """A random expression tree from a Prüfer code rooted at node 0; output = value mod 10."""
    n = rng.randint(min_n, max_n)
    code = [rng.randrange(n) for _ in range(n - 2)] if n > 1 else []
    edges = prufer_to_edges(code, n) if n > 1 else []
    adjacent: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in edges:
        adjacent[a].append(b)
        adjacent[b].append(a)
    children, seen, stack = {}, {0}, [0]
    while stack:  # orient the tree away from the root 0
        node = stack.pop()
        children[node] = [k for k in adjacent[node] if k not in seen]
        seen.update(children[node])
        stack.extend(children[node])
    attrs = [(rng.randint(1, 9), rng.random() < 0.5, rng.choice("+*")) for _ in range(n)]
    expr = _expr(0, children, attrs, rng)
    return {"instruction": INSTRUCTIONS["multi-step-arithmetic"], "input": expr + " = ",
            "output": str(eval(expr) % 10)}  # noqa: S307 - our own generated digits and + * ( ) -


HOLDOUT_MOD = 8  # 1 prompt pattern in 8 (by a stable hash) is reserved for evaluation


def is_heldout(item: dict) -> bool:
    """Whether an item's prompt belongs to the evaluation-only class (1 in HOLDOUT_MOD, by a cryptographic hash).

    Not crc32: a CRC is affine in the input bits, so for short parity strings its low bits fix the parity and
    a crc-held-out test set had only label 0 at lengths 3..5 (measured). BLAKE2b has no such structure.
    """
    return hashlib.blake2b(item["input"].encode("utf-8"), digest_size=8).digest()[0] % HOLDOUT_MOD == 0


def generate(dataset: str, num: int, seed: int, seq_len: int = 70, min_len: int = 1, max_n: int = 30,
             holdout: str | None = None) -> list[dict]:
    """``num`` synthetic items from ``random.Random(seed)``: same seed, same items, on any machine.

    ``holdout="train"`` rejects every item whose prompt is in the held-out class, ``"eval"`` keeps only those, so
    generated test/valid sets never share a prompt with any generated training set (short parity strings and
    small expression trees would otherwise be seen verbatim in training: 66 % / 32 % of the test items at the
    table's scale). ``None``: the original's unfiltered generator.
    """
    rng = random.Random(seed)
    if dataset == "parity":
        draw = lambda: parity_example(rng, seq_len, min_len)  # noqa: E731
    elif dataset == "multi-step-arithmetic":
        draw = lambda: arithmetic_example(rng, max_n, min_len)  # noqa: E731
    else:
        raise UserError(f"{dataset} is not a generated dataset (use --data_dir for gsm8k)")
    if holdout is None:
        return [draw() for _ in range(num)]
    if holdout not in ("train", "eval"):
        raise ValueError(f"holdout must be None, 'train' or 'eval', got {holdout!r}")
    keep, items = holdout == "eval", []
    while len(items) < num:
        for _ in range(10_000):
            item = draw()
            if is_heldout(item) == keep:
                items.append(item)
                break
        else:
            raise UserError(f"{dataset}: the prompt space (seq_len {seq_len}, max_n {max_n}) is too small to hold "
                            "out evaluation prompts; use longer inputs")
    return items


# ------------------------------------------------------------------------------------------------ files
def parse_qa_lines(path: str | Path, instruction: str = INSTRUCTIONS["gsm8k"]) -> list[dict]:
    """The original's txt format: ``question||<<calc>> ... #### answer`` (chain of thought discarded).

    Blank lines are skipped; a line without ``||`` or ``####`` is an error naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if "||" not in line or "####" not in line:
            raise UserError(f"{path}:{lineno}: expected 'question||... #### answer'")
        question, rest = line.split("||", 1)
        items.append({"instruction": instruction, "input": question, "output": rest.rsplit("####", 1)[1].strip()})
    return items


def write_qa_lines(path: str | Path, items: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [it["input"].replace("\n", " ") + "||#### " + it["output"] for it in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _gsm8k_from_jsonl(data_dir: Path, split: str) -> list[dict]:
    """Official GSM8K jsonl (../shared/data/gsm8k): valid = last 500 train rows, train = the rest."""
    from shared_utils.answers import split_solution
    from shared_utils.data import load_gsm8k

    rows = load_gsm8k("test" if split == "test" else "train", data_path=data_dir)
    if split != "test":
        rows = rows[-500:] if split == "valid" else rows[:-500]
    return [{"instruction": INSTRUCTIONS["gsm8k"], "input": r["question"].replace("\n", " "),
             "output": split_solution(r["answer"])[1]} for r in rows]


def load_split(dataset: str, split: str, data_dir: str | Path | None = None, num: int | None = None,
               seed: int | None = None, **gen) -> list[dict]:
    """Items of one split: from ``data_dir`` (txt files, or GSM8K jsonl) or generated with the split's seed."""
    check_dataset(dataset)
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        names = TRAIN_FILES if split == "train" else (f"{split}.txt",)
        found = [data_dir / n for n in names if (data_dir / n).is_file()]
        if found:
            items = parse_qa_lines(found[0], INSTRUCTIONS[dataset])
        elif dataset == "gsm8k" and data_dir.is_dir():
            items = _gsm8k_from_jsonl(data_dir, split)
        else:
            raise UserError(f"no {split} file in {data_dir} (expected {' or '.join(names)})")
        return items[:num] if num is not None else items
    if dataset == "gsm8k":
        raise UserError("gsm8k needs --data_dir: a folder with train_shuffled.txt/valid.txt/test.txt "
                        "or the official jsonl files (../../shared/data/gsm8k)")
    return generate(dataset, DEFAULT_SIZES[split] if num is None else num,
                    SEEDS[split] if seed is None else seed, holdout="train" if split == "train" else "eval", **gen)


# -------------------------------------------------------------------------------------- word tokenizer
WORD_PATTERN = re.compile(r" ?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]|\n| ")


class WordTokenizer:
    """Word-level tokenizer for from-scratch tiny models (spec 8.2): every bit/digit is one token (" 1").

    The vocabulary is fixed (template words, digits, punctuation, with and without a leading space), so a
    checkpoint never needs to store it. Unknown words map to ``<unk>``. pad = eos = ``<pad>``.
    """

    SPECIALS = ("<pad>", "<unk>")

    def __init__(self):
        words = set()
        for text in [prompt_text({"instruction": i, "input": "", "output": ""}) for i in INSTRUCTIONS.values()]:
            words.update(w.strip() for w in WORD_PATTERN.findall(text) if w.strip())
        symbols = sorted(set("0123456789+-*/()=:.,?!$%'\"&;<>#") | words)
        self.vocab = list(self.SPECIALS) + ["\n", " "] + [p + s for s in symbols for p in ("", " ")]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_token_id = self.eos_token_id = 0
        self.unk_token_id = 1
        self.pad_token = self.eos_token = "<pad>"

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.index.get(tok, self.unk_token_id) for tok in WORD_PATTERN.findall(text)]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        toks = [self.vocab[int(i)] for i in ids]
        if skip_special_tokens:
            toks = [t for t in toks if t not in self.SPECIALS]
        return "".join(toks)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids without special tokens, for the word tokenizer and Hugging Face tokenizers alike."""
    return list(tokenizer.encode(text, add_special_tokens=False))


# ----------------------------------------------------------------------------- the original's dataset classes
class _Items:
    """A list of items with len() and [i], as the original's torch Datasets (which a DataLoader can wrap)."""

    items: list[dict]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class ParityDataset(_Items):
    """The original's ``ParityDataset(length, seq_len)``: ``length`` items of 1..seq_len fair bits (seeded)."""

    def __init__(self, length: int, seq_len: int = 70, seed: int = SEEDS["train"], min_len: int = 1):
        self.items = generate("parity", length, seed, seq_len=seq_len, min_len=min_len)


class RandomPruferExpressionDataset(_Items):
    """The original's ``RandomPruferExpressionDataset(size, min_n=1, max_n=6)``: expression trees, value mod 10."""

    def __init__(self, size: int, min_n: int = 1, max_n: int = 6, seed: int = SEEDS["train"]):
        self.items = generate("multi-step-arithmetic", size, seed, min_len=min_n, max_n=max_n)


class QAPairDataset(_Items):
    """The original's ``QAPairDataset(path)``: ``question||... #### answer`` lines (chain of thought dropped)."""

    def __init__(self, path: str | Path):
        self.items = parse_qa_lines(path)



# ------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write train/valid/test .txt files of a dataset.")
    p.add_argument("--dataset_name", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--data_dir", default=None, help="source for gsm8k (txt files or official jsonl)")
    p.add_argument("--num_train", type=int, default=DEFAULT_SIZES["train"])
    p.add_argument("--num_eval", type=int, default=DEFAULT_SIZES["test"])
    p.add_argument("--seq_len", type=int, default=70, help="parity: longest bit string")
    p.add_argument("--max_n", type=int, default=30, help="multi-step-arithmetic: most tree nodes")
    return p


@cli_main
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    gen = {"seq_len": args.seq_len, "max_n": args.max_n}
    for split in ("train", "valid", "test"):
        num = args.num_train if split == "train" else args.num_eval
        items = load_split(check_dataset(args.dataset_name), split, args.data_dir, num=num, **gen)
        print(write_qa_lines(Path(args.out_dir) / f"{split}.txt", items), len(items))


if __name__ == "__main__":
    main()
