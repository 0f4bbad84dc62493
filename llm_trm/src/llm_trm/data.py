"""Text for every phase: stage-1a prose, generated "thinking" problems, think-delimiter location.

Stage 1a reads ``--data_path`` (a local text file / directory, e.g. ../../shared/data/wikitext2) or the
embedded stdlib-docstring corpus (the offline stand-in for fineweb-edu). Stage 1b, phase 2 and phase 3 use
templated arithmetic problems whose assistant turn is ``<think>\\n steps \\n</think>{answer}``: SmolLM2 has no
think tokens, so the delimiters are plain multi-token text, located with the fast tokenizer's offsets.
The answer follows ``</think>`` directly, so the token after the ``</think>`` span is the answer's first digit.

    python -c "from llm_trm.data import make_problems; print(make_problems(2, seed=0))"
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared_utils.errors import UserError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_INSTRUCTION = "Answer with only the number."
ANSWER_PREFIX = "Answer: "  # after </think>: the state at its last token predicts the answer's first token

_NAMES = ("Tom", "Ana", "Li", "Sara", "Omar", "Maya", "Ben", "Ivy")
_ITEMS = ("apples", "books", "coins", "stamps", "marbles", "pens")


@dataclass(frozen=True)
class Problem:
    question: str  # the user turn
    steps: str  # programmatic step-by-step thinking text
    answer: int
    lead: str = ANSWER_PREFIX  # text between </think>\\n and the answer


def _add_steps(a: int, b: int) -> str:
    ones = a % 10 + b % 10
    lines = [f"Add the ones: {a % 10} + {b % 10} = {ones}."]
    tens = a // 10 + b // 10 + ones // 10
    if a >= 10 or b >= 10 or ones >= 10:
        carry = f" plus carry {ones // 10}" if ones >= 10 else ""
        lines.append(f"Add the tens: {a // 10} + {b // 10}{carry} = {tens}.")
    lines.append(f"So {a} + {b} = {a + b}.")
    return "\n".join(lines)


def make_problem(rng: random.Random, max_value: int = 99) -> Problem:
    """One addition problem, plain or as a word problem, with step-by-step thinking."""
    a, b = rng.randint(1, max_value), rng.randint(1, max_value)
    if rng.random() < 0.5:
        q = f"What is {a} + {b}? {ANSWER_INSTRUCTION}"
    else:
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now? {ANSWER_INSTRUCTION}"
    return Problem(q, _add_steps(a, b), a + b)


def make_problems(n: int, seed: int = 0, max_value: int = 99) -> list[Problem]:
    rng = random.Random(seed)
    return [make_problem(rng, max_value) for _ in range(n)]


def addition_problem(a: int, b: int) -> Problem:
    """A short addition prompt (phase 2/3): "What is a + b?", thinking "a + b = c. The answer is c.", answer
    line "The answer is c".

    The answer line repeats the thinking's last sentence, so the state after "The answer is " predicts the
    answer's first digit (SmolLM2-135M copies it; after a bare "Answer: " it did so in only 48% of 40 pairs).
    """
    return Problem(f"What is {a} + {b}?", f"{a} + {b} = {a + b}. The answer is {a + b}.", a + b,
                   lead="The answer is ")


def addition_split(n_train: int, n_heldout: int, max_value: int = 99, seed: int = 0) -> tuple[list, list]:
    """Train / held-out addition problems over operands 0..max_value whose *unordered operand pairs* are
    disjoint (a held-out {a, b} never appears in training in either order), each problem used once."""
    pairs = [(a, b) for a in range(max_value + 1) for b in range(a, max_value + 1)]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    n_pairs = len(pairs)
    n_he = min(n_heldout, n_pairs // 2)
    held, rest = pairs[:n_he], pairs[n_he:]
    probs = []
    for a, b in rest:  # both orders of a training pair may be used; held-out pairs never
        probs += [(a, b), (b, a)] if a != b else [(a, b)]
    rng.shuffle(probs)
    if len(probs) < n_train:
        raise UserError(f"operands 0..{max_value} give only {len(probs)} training problems (< {n_train}); "
                        "raise --max_value or lower --num_samples")
    held_probs = [(a, b) if rng.random() < 0.5 else (b, a) for a, b in held]
    return [addition_problem(a, b) for a, b in probs[:n_train]], [addition_problem(a, b) for a, b in held_probs]


def assistant_turn(p: Problem) -> str:
    return f"{THINK_OPEN}\n{p.steps}\n{THINK_CLOSE}\n{p.lead}{p.answer}"


def answer_prompt(tokenizer, p: Problem, steps: str = "") -> str:
    """Chat prompt + think block + answer lead: the text whose next token is the answer's first token.
    ``steps=""`` is the answer-only (empty-think) prompt used by the base model and the TRM systems."""
    return chat_prompt(tokenizer, p.question) + f"{THINK_OPEN}\n{steps}\n{THINK_CLOSE}\n{p.lead}"


def template_prefix(tokenizer) -> str:
    """The part of every chat prompt before the user's words (the system turn and the user header)."""
    mark = "\x00QUESTION\x00"
    text = chat_prompt(tokenizer, mark)
    return text[: text.index(mark)]


def chat_prompt(tokenizer, question: str) -> str:
    """The chat-formatted prompt up to the assistant's first token (generation prompt)."""
    msgs = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def thinking_text(tokenizer, p: Problem) -> tuple[str, int]:
    """(full chat text with the thinking assistant turn, char length of the prompt part).

    Built as prompt + assistant turn + end-of-turn so the prompt part is byte-identical to what
    :func:`chat_prompt` gives at inference time.
    """
    prompt = chat_prompt(tokenizer, p.question)
    end = tokenizer.eos_token or ""
    return prompt + assistant_turn(p) + end, len(prompt)


def think_token_span(offsets: list[tuple[int, int]], text: str, prompt_chars: int) -> tuple[int, int]:
    """Token indices (start, end) of the think block, searched only after the prompt.

    ``start`` = first token overlapping the ``<think>`` characters; ``end`` = the token holding the last
    character of ``</think>``. ``hidden_pre`` is states[:start] and ``hidden_post`` is states[end]: one
    definition for every sample (fixes [LT] bug (a), where it depended on batch position).
    Raises ValueError when a delimiter is missing.
    """
    c0 = text.find(THINK_OPEN, prompt_chars)
    c1 = text.find(THINK_CLOSE, c0 + len(THINK_OPEN)) if c0 >= 0 else -1
    if c0 < 0 or c1 < 0:
        raise ValueError("think delimiters not found after the prompt")
    last_char = c1 + len(THINK_CLOSE) - 1
    start = next(i for i, (s, e) in enumerate(offsets) if e > c0 and e > s)
    end = next(i for i, (s, e) in enumerate(offsets) if s <= last_char < e)
    if start < 1 or end <= start:
        raise ValueError(f"bad think span: start={start} end={end}")
    return start, end


def load_stage1a_texts(data_path: str | None, num_samples: int, seed: int) -> list[str]:
    """Prose rows for stage 1a: ``data_path`` (file or dir) or the embedded corpus, shuffled, ``num_samples``."""
    from shared_utils.data import load_text_corpus

    source = data_path or "embedded"
    rows: list[str] = []
    for split in ("train", "validation", "test"):
        try:
            rows += load_text_corpus(source, split)
        except UserError:
            if split == "train" and source == "embedded":
                raise
        if source != "embedded" and rows:
            break  # a local file/dir: one split is enough (we make our own 90/10 split)
    rows = [r for r in rows if len(r.split()) >= 8]  # drop headings / one-word lines
    if not rows:
        raise UserError(f"no usable text rows in {source}")
    random.Random(seed).shuffle(rows)
    return rows[:num_samples]


def stage1b_texts(tokenizer, num_samples: int, seed: int) -> list[str]:
    """Chat-formatted thinking sequences for stage 1b (train on all positions, as the original did): word
    problems with step-by-step thinking alternating with the phase-2 addition format. The addition problems come
    from the *training* side of :func:`addition_split` (default held-out pool of 500 operand pairs, seed 42, the
    phase-2 defaults), so no held-out phase-2/3 problem is seen by the compressor."""
    words = make_problems((num_samples + 1) // 2, seed=seed + 1000)
    adds, _ = addition_split(num_samples // 2, 500, 99, seed=42)
    mixed = [p for pair in zip(words, adds) for p in pair] + words[len(adds):]
    return [thinking_text(tokenizer, p)[0] for p in mixed[:num_samples]]


def split_heldout(items: list, frac: float = 0.1) -> tuple[list, list]:
    """Deterministic 90/10 split: the last ``frac`` of an already shuffled list is held out."""
    n_val = max(1, int(round(len(items) * frac))) if len(items) > 1 else 0
    return items[: len(items) - n_val], items[len(items) - n_val:]
