"""Phase-2 data: (context, target) last-layer hidden-state pairs from the frozen LLM, teacher-forced.

    python -m src.train.phase2_datagen --num_samples 2500                # original command (from llm_trm/)
    python -m llm_trm.phase2_datagen --num_samples 2500 --heldout_fraction 0.2 --max_value 99

Each sequence is ``chat prompt + <think>\\n a + b = c \\n</think>\\nAnswer: c``. ``hidden_pre`` = the states of
the user turn up to (not including) ``<think>`` (the chat template's constant system turn is left out: it is
the same for every row and is computed once, as a shared key/value prefix); ``hidden_post`` (``--target
answer``, the default) = the state at the last token of the answer prefix, i.e. the state whose next token IS
the answer's first token. ``--target think_end`` is the earlier definition (last token of ``</think>``), kept for
comparison. The file records, per pair, the model's argmax token at the target (``post_token_id``), the true
first answer token (``answer_token_id``) and, for held-out pairs, the base model's first token on the
answer-only prompt (empty think block; ``base_token_id``); ``target_hit_rate`` = the fraction of pairs whose
target predicts the answer's first token (phase 2 refuses targets below 0.5).
Held-out problems (``split`` = 1) have operand pairs disjoint from training (``llm_trm.data.addition_split``).
Partial results are checkpointed every ``--checkpoint_every`` samples and resumed automatically.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llm_trm.checks import cli_entry, require_positive
from llm_trm.data import (
    ANSWER_PREFIX,
    THINK_CLOSE,
    Problem,
    addition_split,
    answer_prompt,
    assistant_turn,
    template_prefix,
    think_token_span,
    thinking_text,
)
from llm_trm.hidden import PrefixCache, shared_prefix_ids
from llm_trm.llm import LazyLLM, pick_run_device
from shared_utils.errors import UserError
from shared_utils.runs import atomic_torch_save, atomic_write_json, seed_everything


@dataclass
class DatagenConfig:
    dataset: str = "arith"  # arith (generated, offline) | gsm8k (--data_path dir/file, or the Hub online)
    num_samples: int = 2500  # pairs in all (train + held-out)
    heldout_fraction: float = 0.2  # held-out problems: operand pairs never seen in training
    target: str = "answer"  # answer: state predicting the answer's first token | think_end: end of </think>
    output_dir: str = "./data/hidden_pairs"
    output_filename: str = "hidden_pairs.pt"
    model_name: str = "smollm2-135m"
    mode: str = "teacher_forcing"  # teacher_forcing | generate
    max_new_tokens: int = 512  # generate mode only
    temperature: float = 0.7  # generate mode only
    max_seq_length: int = 2048
    batch_size: int = 4
    checkpoint_every: int = 100
    max_value: int = 99  # arith operands in 1..max_value
    data_path: str | None = None
    seed: int = 42
    device: str = "auto"
    auto_resume: bool = True


RESUME_KEYS = ("model_name", "dataset", "num_samples", "max_seq_length", "output_filename", "mode", "max_value",
               "seed", "data_path", "heldout_fraction", "target")


def load_problems(cfg: DatagenConfig) -> tuple[list[Problem], list[int]]:
    """Problems and their split (0 train, 1 held out)."""
    n_he = max(1, int(round(cfg.num_samples * cfg.heldout_fraction)))
    if cfg.dataset == "arith":
        tr, he = addition_split(cfg.num_samples - n_he, n_he, cfg.max_value, cfg.seed)
        return tr + he, [0] * len(tr) + [1] * len(he)
    if cfg.dataset == "gsm8k":
        from llm_trm.data import ANSWER_INSTRUCTION
        from shared_utils.answers import split_solution, strip_calculator_annotations
        from shared_utils.data import load_gsm8k

        rows = load_gsm8k("train", cfg.data_path, limit=cfg.num_samples)
        out = []
        for r in rows:
            steps, final = split_solution(r["answer"])
            out.append(Problem(f"{r['question']} {ANSWER_INSTRUCTION}", strip_calculator_annotations(steps).strip(),
                               final))
        if len(out) < 2:
            raise UserError(f"--data_path {cfg.data_path}: {len(out)} GSM8K rows, need at least 2")
        n_he = min(n_he, len(out) - 1)
        return out, [0] * (len(out) - n_he) + [1] * n_he
    raise UserError(f"unknown --dataset {cfg.dataset} (use arith or gsm8k)")


def answer_token_index(offsets: list[tuple[int, int]], answer_char: int) -> int:
    """Index of the token holding the answer's first character."""
    return next(i for i, (s, e) in enumerate(offsets) if e > answer_char and e > s)


@torch.no_grad()
def pairs_for_texts(model, tokenizer, texts: list[str], prompt_chars: list[int], max_len: int,
                    target: str = "answer", prefix: PrefixCache | None = None,
                    answer_chars: list[int] | None = None) -> list[dict | None]:
    """Teacher-forced pairs for a batch of full texts; None where a delimiter is missing or truncated.

    With ``prefix`` (the shared system turn, ``P`` tokens) only the rest of each text is run, and
    ``hidden_pre`` starts after the prefix; without it ``hidden_pre`` is every state before ``<think>``.
    ``answer_chars``: where each answer starts (default: after the first ``Answer: `` following ``</think>``).
    """
    enc = tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=max_len, padding="longest",
                    return_tensors="pt", add_special_tokens=False)
    dev = next(model.parameters()).device
    p = len(prefix) if prefix is not None else 0
    ids, att = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
    if prefix is not None and p:
        states = torch.cat([torch.zeros(len(texts), p, model.config.hidden_size),
                            prefix.states(ids[:, p:], att[:, p:]).cpu()], dim=1)
    else:
        states = PrefixCache(model, []).states(ids, att).cpu()
    head = model.get_output_embeddings().weight
    out = []
    for i, text in enumerate(texts):
        n = int(enc["attention_mask"][i].sum())
        offsets = [tuple(o) for o in enc["offset_mapping"][i, :n].tolist()]
        try:
            start, end = think_token_span(offsets, text, prompt_chars[i])
            if target == "answer":
                ans_char = answer_chars[i] if answer_chars else (
                    text.index(ANSWER_PREFIX, text.index(THINK_CLOSE, prompt_chars[i])) + len(ANSWER_PREFIX))
                t_ans = answer_token_index(offsets, ans_char)
            else:
                t_ans = end + 1
            if t_ans >= n or start <= p:
                raise ValueError("answer truncated")
        except (ValueError, StopIteration):
            out.append(None)
            continue
        post = states[i, t_ans - 1]
        logits = post.to(head.device, head.dtype) @ head.T
        out.append({"hidden_pre": states[i, p:start].clone(), "hidden_post": post.clone(),
                    "post_token_id": int(logits.argmax()), "answer_token_id": int(enc["input_ids"][i, t_ans]),
                    "num_thinking_tokens": end + 1 - start})
    return out


@torch.no_grad()
def first_token_ids(model, tokenizer, texts: list[str], prefix: PrefixCache | None = None) -> list[int]:
    """argmax next token after each text (left to right, right-padded batch)."""
    enc = tokenizer(texts, padding="longest", return_tensors="pt", add_special_tokens=False)
    dev = next(model.parameters()).device
    p = len(prefix) if prefix is not None else 0
    ids, att = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
    states = prefix.states(ids[:, p:], att[:, p:]) if p else PrefixCache(model, []).states(ids, att)
    last = att[:, p:].sum(1) - 1
    h = states[torch.arange(len(texts)), last]
    head = model.get_output_embeddings().weight
    return (h.to(head.dtype) @ head.T).argmax(-1).tolist()


def generate_thinking(model, tokenizer, problem: Problem, cfg: DatagenConfig) -> Problem | None:
    """Sample the model's own thinking after ``<think>\\n`` until the text ``</think>`` appears (string
    criterion: the delimiter is several tokens, so an EOS-id trick cannot work)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    from llm_trm.data import THINK_CLOSE, THINK_OPEN, chat_prompt

    prefix = chat_prompt(tokenizer, problem.question) + THINK_OPEN + "\n"
    ids = tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids.to(next(model.parameters()).device)
    n0 = ids.shape[1]

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return THINK_CLOSE in tokenizer.decode(input_ids[0, n0:])

    out = model.generate(ids, do_sample=True, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                         stopping_criteria=StoppingCriteriaList([StopOnText()]),
                         pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, n0:], skip_special_tokens=True)
    if THINK_CLOSE not in text:
        return None
    return Problem(problem.question, text.split(THINK_CLOSE)[0].strip(), problem.answer)


def _ckpt_path(cfg: DatagenConfig) -> Path:
    return Path(cfg.output_dir) / f"checkpoint_{Path(cfg.output_filename).stem}.pt"


def _resume(cfg: DatagenConfig) -> list:
    """Items of an interrupted run with the same settings (refused, with the differing keys, otherwise)."""
    from llm_trm.checks import load_json_file, load_torch_file

    meta = Path(cfg.output_dir) / "datagen_config.json"
    ck = _ckpt_path(cfg)
    if not (cfg.auto_resume and ck.exists() and meta.exists()):
        return []
    old = load_json_file(meta, "datagen config")
    diff = [k for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise UserError(f"{ck} was made with different {diff}; delete it or pass --no_auto_resume")
    state = load_torch_file(ck, "datagen checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("items"), list):
        raise UserError(f"datagen checkpoint {ck} is not a phase-2 datagen checkpoint; delete it")
    return state["items"]


def run(cfg: DatagenConfig, llm: LazyLLM | None = None, tokenizer=None) -> dict:
    from llm_trm.checks import check_data_path, check_output_path
    from shared_utils.models import load_tokenizer

    out_dir = check_output_path(cfg.output_dir, "--output_dir")
    check_data_path(cfg.data_path)
    seed_everything(cfg.seed)
    problems, splits = load_problems(cfg)
    items = _resume(cfg)
    tokenizer = tokenizer or load_tokenizer(cfg.model_name)
    llm = llm or LazyLLM(cfg.model_name, pick_run_device(cfg.device))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "datagen_config.json", asdict(cfg))
    model = llm.get()
    prefix_text = template_prefix(tokenizer)
    probe = [thinking_text(tokenizer, p)[0] for p in problems[:8]] + [answer_prompt(tokenizer, problems[0])]
    prefix = PrefixCache(model, shared_prefix_ids(tokenizer, probe, prefix_text))
    bar = tqdm(total=len(problems), initial=len(items), desc="phase-2 pairs")
    for s in range(len(items), len(problems), cfg.batch_size):
        chunk = problems[s: s + cfg.batch_size]
        if cfg.mode == "generate":
            chunk = [generate_thinking(model, tokenizer, p, cfg) for p in chunk]
        texts = [thinking_text(tokenizer, p) if p else ("", 0) for p in chunk]
        pre = prefix if all(t.startswith(prefix_text) for t, _ in texts) else None
        ans = [c + len(assistant_turn(p)) - len(str(p.answer)) if p else 0 for (_, c), p in zip(texts, chunk)]
        got = pairs_for_texts(model, tokenizer, [t for t, _ in texts], [c for _, c in texts], cfg.max_seq_length,
                              cfg.target, pre, ans)
        held = [j for j, p in enumerate(chunk) if splits[s + j] == 1 and p is not None]
        base = dict(zip(held, first_token_ids(model, tokenizer, [answer_prompt(tokenizer, chunk[j])
                                                                for j in held], prefix))) if held else {}
        for j, (p, g) in enumerate(zip(chunk, got)):
            items.append(None if (p is None or g is None) else {
                **g, "answer": p.answer, "problem": p.question, "split": splits[s + j],
                "base_token_id": base.get(j, -1)})
        bar.update(len(chunk))
        if len(items) % cfg.checkpoint_every < cfg.batch_size or len(items) == len(problems):
            atomic_torch_save({"items": items}, _ckpt_path(cfg))
    bar.close()
    failures = sum(it is None for it in items)
    data = collate_pairs([it for it in items if it is not None], cfg)
    data["shared_prefix_tokens"] = len(prefix)
    atomic_torch_save(data, out_dir / cfg.output_filename)
    _ckpt_path(cfg).unlink(missing_ok=True)
    print(f"[phase2 datagen] {len(data['hidden_post'])} pairs ({failures} failures; "
          f"{int((data['split'] == 0).sum())} train / {int((data['split'] == 1).sum())} held-out, disjoint operand "
          f"pairs) -> {out_dir / cfg.output_filename}; target '{cfg.target}': the model's next token at the target "
          f"is the answer's first token in {data['target_hit_rate']:.3f} of the pairs", flush=True)
    if data["target_hit_rate"] < 0.5:
        print(f"warning: target '{cfg.target}' predicts the answer in only {data['target_hit_rate']:.1%} of pairs; "
              "phase 2 refuses such a target", file=sys.stderr)
    return data


def collate_pairs(items: list[dict], cfg: DatagenConfig) -> dict:
    if not items:
        raise UserError("no valid (pre, post) pairs were produced")
    post = torch.tensor([it["post_token_id"] for it in items])
    ans = torch.tensor([it["answer_token_id"] for it in items])
    return {"hidden_pre": [it["hidden_pre"] for it in items],
            "hidden_post": torch.stack([it["hidden_post"] for it in items]),
            "post_token_id": post, "answer_token_id": ans,
            "base_token_id": torch.tensor([it["base_token_id"] for it in items]),
            "split": torch.tensor([it["split"] for it in items]),
            "target_hit_rate": (post == ans).float().mean().item(), "target": cfg.target,
            "seq_lengths": torch.tensor([len(it["hidden_pre"]) for it in items]),
            "num_thinking_tokens": torch.tensor([it["num_thinking_tokens"] for it in items]),
            "answers": [str(it["answer"]) for it in items], "problems": [it["problem"] for it in items],
            "hidden_size": int(items[0]["hidden_post"].shape[-1]), "model_name": cfg.model_name}


def parse_config(argv=None) -> DatagenConfig:
    c = DatagenConfig()
    p = argparse.ArgumentParser(prog="phase2_datagen", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["arith", "gsm8k"], default=c.dataset)
    p.add_argument("--mode", choices=["teacher_forcing", "generate"], default=c.mode)
    for k in ("num_samples", "max_new_tokens", "max_seq_length", "batch_size", "checkpoint_every", "max_value",
              "seed"):
        p.add_argument(f"--{k}", type=int, default=getattr(c, k))
    p.add_argument("--temperature", type=float, default=c.temperature)
    p.add_argument("--heldout_fraction", type=float, default=c.heldout_fraction)
    p.add_argument("--target", choices=["answer", "think_end"], default=c.target)
    for k in ("output_dir", "output_filename", "model_name", "device"):
        p.add_argument(f"--{k}", default=getattr(c, k))
    p.add_argument("--data_path", default=None)
    p.add_argument("--no_auto_resume", dest="auto_resume", action="store_false")
    cfg = DatagenConfig(**vars(p.parse_args(argv)))
    require_positive(cfg, ("num_samples", "max_seq_length", "batch_size", "checkpoint_every", "max_value"))
    if not 0 < cfg.heldout_fraction < 1:
        raise UserError(f"--heldout_fraction {cfg.heldout_fraction} must be in (0, 1)")
    return cfg


main = cli_entry(parse_config, run)


if __name__ == "__main__":
    main()
