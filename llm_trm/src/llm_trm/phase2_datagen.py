"""Phase-2 data: (pre-thinking, post-thinking) last-layer hidden-state pairs from the frozen LLM.

    python -m src.train.phase2_datagen --num_samples 400                 # original command (from llm_trm/)
    python -m llm_trm.phase2_datagen --dataset gsm8k --data_path ../../shared/data/gsm8k --num_samples 200

Default mode is teacher forcing: one forward over ``prompt + <think>\\n steps \\n</think>answer`` per problem.
``hidden_pre`` = states before the first token of ``<think>`` (the whole chat context); ``hidden_post`` = the
state at the token holding the last character of ``</think>``, i.e. the state that predicts the answer's first
token. The original took it from sampled generations with ``</think>`` as EOS, which made the index depend on
the sample's batch position (bug a). ``--mode generate`` samples the thinking with a string stopping
criterion instead and then teacher-forces the result, so the definition stays the same.
Output ``{output_dir}/{output_filename}``: hidden_pre (list of [L_i, D]), hidden_post [N, D],
post_token_id [N], answers, problems, seq_lengths, num_thinking_tokens, hidden_size, model_name.
Partial results are checkpointed every ``--checkpoint_every`` samples and resumed automatically.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llm_trm.data import Problem, make_problems, think_token_span, thinking_text
from llm_trm.hidden import last_layer_states
from llm_trm.llm import LazyLLM, pick_run_device
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_torch_save, atomic_write_json, seed_everything


@dataclass
class DatagenConfig:
    dataset: str = "arith"  # arith (generated, offline) | gsm8k (--data_path dir/file, or the Hub online)
    num_samples: int = 1000
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
               "seed", "data_path")


def load_problems(cfg: DatagenConfig) -> list[Problem]:
    if cfg.dataset == "arith":
        return make_problems(cfg.num_samples, seed=cfg.seed, max_value=cfg.max_value)
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
        return out
    raise UserError(f"unknown --dataset {cfg.dataset} (use arith or gsm8k)")


@torch.no_grad()
def pairs_for_texts(model, tokenizer, texts: list[str], prompt_chars: list[int], max_len: int) -> list[dict | None]:
    """Teacher-forced pairs for a batch of full texts; None where a delimiter is missing or truncated."""
    enc = tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=max_len, padding="longest",
                    return_tensors="pt", add_special_tokens=False)
    dev = next(model.parameters()).device
    states = last_layer_states(model, enc["input_ids"].to(dev), enc["attention_mask"].to(dev)).cpu()
    head = model.get_output_embeddings().weight
    out = []
    for i, text in enumerate(texts):
        n = int(enc["attention_mask"][i].sum())
        offsets = [tuple(o) for o in enc["offset_mapping"][i, :n].tolist()]
        try:
            start, end = think_token_span(offsets, text, prompt_chars[i])
        except (ValueError, StopIteration):
            out.append(None)
            continue
        post = states[i, end]
        logits = post.to(head.device, head.dtype) @ head.T
        out.append({"hidden_pre": states[i, :start].clone(), "hidden_post": post.clone(),
                    "post_token_id": int(logits.argmax()), "num_thinking_tokens": end + 1 - start})
    return out


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
    meta = Path(cfg.output_dir) / "datagen_config.json"
    ck = _ckpt_path(cfg)
    if not (cfg.auto_resume and ck.exists() and meta.exists()):
        return []
    old = json.loads(meta.read_text())
    diff = [k for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise UserError(f"{ck} was made with different {diff}; delete it or pass --no_auto_resume")
    return torch.load(ck, weights_only=True)["items"]


def run(cfg: DatagenConfig, llm: LazyLLM | None = None, tokenizer=None) -> dict:
    from shared_utils.models import load_tokenizer

    seed_everything(cfg.seed)
    tokenizer = tokenizer or load_tokenizer(cfg.model_name)
    llm = llm or LazyLLM(cfg.model_name, pick_run_device(cfg.device))
    problems = load_problems(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = _resume(cfg)
    atomic_write_json(out_dir / "datagen_config.json", asdict(cfg))
    failures = 0
    bar = tqdm(total=len(problems), initial=len(items), desc="phase-2 pairs")
    for s in range(len(items), len(problems), cfg.batch_size):
        chunk = problems[s: s + cfg.batch_size]
        if cfg.mode == "generate":
            chunk = [generate_thinking(llm.get(), tokenizer, p, cfg) for p in chunk]
        texts = [thinking_text(tokenizer, p) if p else ("", 0) for p in chunk]
        got = pairs_for_texts(llm.get(), tokenizer, [t for t, _ in texts], [c for _, c in texts], cfg.max_seq_length)
        for p, g in zip(chunk, got):
            items.append(None if (p is None or g is None) else {**g, "answer": p.answer, "problem": p.question})
            failures += items[-1] is None
        bar.update(len(chunk))
        if len(items) % cfg.checkpoint_every < cfg.batch_size or len(items) == len(problems):
            atomic_torch_save({"items": items}, _ckpt_path(cfg))
    bar.close()
    data = collate_pairs([it for it in items if it is not None], cfg)
    atomic_torch_save(data, out_dir / cfg.output_filename)
    _ckpt_path(cfg).unlink(missing_ok=True)
    print(f"[phase2 datagen] {len(data['hidden_post'])} pairs ({failures} failures) -> "
          f"{out_dir / cfg.output_filename}", flush=True)
    return data


def collate_pairs(items: list[dict], cfg: DatagenConfig) -> dict:
    if not items:
        raise UserError("no valid (pre, post) pairs were produced")
    return {"hidden_pre": [it["hidden_pre"] for it in items],
            "hidden_post": torch.stack([it["hidden_post"] for it in items]),
            "post_token_id": torch.tensor([it["post_token_id"] for it in items]),
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
    for k in ("output_dir", "output_filename", "model_name", "device"):
        p.add_argument(f"--{k}", default=getattr(c, k))
    p.add_argument("--data_path", default=None)
    p.add_argument("--no_auto_resume", dest="auto_resume", action="store_false")
    cfg = DatagenConfig(**vars(p.parse_args(argv)))
    bad = [k for k in ("num_samples", "max_seq_length", "batch_size", "checkpoint_every", "max_value")
           if getattr(cfg, k) < 1]
    if bad:
        raise UserError(f"--{bad[0]} must be >= 1")
    return cfg


@cli_main
def main(argv=None):
    return run(parse_config(argv))


if __name__ == "__main__":
    main()
