"""A solvable twin of GSM8K: seeded word problems with a gold abstract plan and a gold execution.

Each problem tells a short story about one person and one kind of item: a start amount, then 2-4 (train /
test) or 5 (the `longer` split) operations, each phrased by one of several templates (add, subtract,
multiply, divide), and the question "How many ... now?". Records use the same fields as the GSM8K path
(`id, question, plan, execution, answer_numerical`), so the same [Q | P | E] layout, loader and scorer apply:
- plan: one abstract sentence per operation, in words, with no digits (what to do, not with which numbers);
- execution: one worked line per operation with the numbers (`12+7=19`), the answer after `####` is added by
  the loader (`data.exec_include_answer`).
All intermediate values stay in [1, MAX_VALUE = 20] (small integers). Splits are disjoint by question text: test and
longer problems that also occur in train are dropped and redrawn.

python scripts/data_prep/generate_twin.py --output_dir runs/twin/data --n_train 20000 --n_test 500 --n_longer 500
"""

from __future__ import annotations

import random

NAMES = ("Alice", "Ben", "Carla", "Dev", "Emma", "Farid", "Gina", "Hugo", "Iris", "Jon", "Kemi", "Liam", "Maya",
         "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara")
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "cookies", "stamps",
         "buttons", "beads")
MAX_VALUE = 20  # small integers: the arithmetic facts are few enough for a CPU-sized model to learn

# op -> (question templates, plan sentence, symbol)
TEMPLATES = {
    "add": (("{f} gives {n} {v} more.", "{n} finds {v} more.", "{n} buys {v} more.", "{n} wins {v} more."),
            "add the gain", "+"),
    "sub": (("{n} gives {v} to {f}.", "{n} loses {v}.", "{n} sells {v}.", "{n} uses {v}."),
            "subtract the loss", "-"),
    "mul": (("The pile grows {v} times bigger.", "{n} gets {v} times as many.", "A machine makes it {v} times as many."),
            "multiply by the factor", "*"),
    "div": (("{n} splits them into {v} equal piles and keeps one.", "{n} shares them among {v} kids and keeps one share.",
             "Only one in {v} is kept."),
            "divide into equal parts", "/"),
}
ORDINALS = ("First", "Then", "Next", "After that")


def _feasible(x: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """(op, operand, result) choices from the current value x that keep every value in [1, MAX_VALUE]."""
    out = []
    if x + 1 <= MAX_VALUE:
        v = rng.randint(1, min(9, MAX_VALUE - x))
        out.append(("add", v, x + v))
    if x >= 2:
        v = rng.randint(1, min(9, x - 1))
        out.append(("sub", v, x - v))
    ks = [k for k in (2, 3) if x * k <= MAX_VALUE]
    if ks:
        k = rng.choice(ks)
        out.append(("mul", k, x * k))
    ds = [k for k in (2, 3, 4, 5) if x % k == 0 and x // k >= 1]
    if ds:
        k = rng.choice(ds)
        out.append(("div", k, x // k))
    return out


def make_problem(rng: random.Random, n_ops: int) -> dict:
    """One problem with `n_ops` operations (question, plan, execution, answer_numerical, ops)."""
    name, friend = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x = rng.randint(2, MAX_VALUE)
    sentences, plan, lines, ops = [f"{name} has {x} {item}."], [], [], []
    for j in range(n_ops):
        op, v, y = rng.choice(_feasible(x, rng))
        qt, ps, sym = TEMPLATES[op]
        sentences.append(rng.choice(qt).format(n=name, f=friend, v=v, i=item))
        plan.append(f"{ORDINALS[min(j, len(ORDINALS) - 1)]}, {ps}.")
        lines.append(f"{x}{sym}{v}={y}")
        ops.append(op)
        x = y
    sentences.append(f"How many {item} does {name} have now?")
    return {"question": " ".join(sentences), "plan": " ".join(plan + ["Give the total."]),
            "execution": "\n".join(lines), "answer_numerical": str(x), "ops": ops}


def make_split(n: int, seed: int, ops_range: tuple[int, int], prefix: str, exclude: set | None = None,
               max_tries: int = 50) -> list[dict]:
    """`n` distinct problems (by question text), none of them in `exclude`; ids `{prefix}_{i}`."""
    rng = random.Random(seed)
    seen, out = set(exclude or ()), []
    tries = 0
    while len(out) < n:
        p = make_problem(rng, rng.randint(*ops_range))
        if p["question"] in seen:
            tries += 1
            if tries > max_tries * max(1, n):
                raise RuntimeError(f"could not draw {n} distinct problems for {prefix}")
            continue
        seen.add(p["question"])
        p["id"] = f"{prefix}_{len(out)}"
        out.append(p)
    return out


def make_twin(n_train: int, n_test: int, n_longer: int, seed: int = 0, train_ops=(2, 4), longer_ops: int = 5) -> dict:
    """{"train", "test", "longer"} record lists; test/longer disjoint from train (and from each other)."""
    train = make_split(n_train, seed * 3 + 0, train_ops, "twin_train")
    used = {r["question"] for r in train}
    test = make_split(n_test, seed * 3 + 1, train_ops, "twin_test", exclude=used)
    used |= {r["question"] for r in test}
    longer = make_split(n_longer, seed * 3 + 2, (longer_ops, longer_ops), "twin_longer", exclude=used)
    return {"train": train, "test": test, "longer": longer}


def check_record(rec: dict) -> bool:
    """Re-execute the gold execution and compare with the gold answer (used by the tests)."""
    x = None
    for line in rec["execution"].split("\n"):
        lhs, rhs = line.split("=")
        for sym in "+-*/":
            if sym in lhs:
                a, b = (int(t) for t in lhs.split(sym))
                val = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[sym]
                if sym == "/" and a % b:
                    return False
                break
        if val != int(rhs) or (x is not None and a != x):
            return False
        x = val
    return str(x) == rec["answer_numerical"]
