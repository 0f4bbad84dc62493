"""Evaluation of every checkpoint in a training folder, as the original evaluation(_transformer).py.

    python evaluation.py --test True --checkpoint_folder CKPT/improved_training_checkpoint_test_tiny_parity \\
        --dataset_name parity --batch_size 64 --result_folder ./results

Repo metric: the teacher-forced probability of the whole answer span (":" + answer), averaged over the
set, written as ``{model_short}_{improved|transformer}_results.json`` = ``{"<step>": mean_prob}``.
Beside it (ours): greedy exact match from generation with the grouped KV cache (bridge carries kept
between calls) in ``..._greedy_em.json`` and per-example predictions in ``..._predictions_<step>.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from tqdm import tqdm

from high_to_low.get_model import build_model
from high_to_low.reasoning_datasets import answer_text, check_dataset, encode, load_split, prompt_text
from high_to_low.training import (
    check_generator_sizes,
    check_sizes,
    load_trainable,
    make_batch,
    model_short,
    set_threads,
    span_logprobs,
    str2bool,
)
from shared_utils.answers import answers_match
from shared_utils.errors import UserError
from shared_utils.models import pick_device
from shared_utils.runs import atomic_write_json, atomic_write_text, check_output_path, load_json_file


def build_parser(transformer: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"Evaluate {'baseline' if transformer else 'improved'} checkpoints.")
    add = p.add_argument
    add("--test", type=str2bool, default=True, help="True: test split; False: validation split")
    add("--checkpoint_folder", required=True)
    add("--dataset_name", default="multi-step-arithmetic")
    add("--batch_size", type=int, default=64)
    add("--result_folder", required=True)
    add("--gpu_memory_limit", default="35GiB", help="per-GPU max_memory for multi-GPU dispatch; unused on CPU")
    add("--device", default="auto")
    add("--num_eval", type=int, default=None, help="synthetic eval examples (default 1000); cap for gsm8k")
    add("--data_dir", default=None, help="override the training run's --data_dir (txt files or GSM8K jsonl)")
    add("--seq_len", type=int, default=None, help="parity eval lengths (default: the training run's)")
    add("--min_len", type=int, default=None, help="shortest eval length (e.g. 17 for longer inputs)")
    add("--max_n", type=int, default=None, help="arithmetic eval size (default: the training run's)")
    add("--generate", type=str2bool, default=True, help="also compute greedy exact match by generation")
    add("--max_new_tokens", type=int, default=0, help="0: as many tokens as the gold answer span")
    add("--tag", default="", help="suffix for result file names, e.g. _len17-32")
    add("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    return p


def extract_prediction(text: str) -> str:
    """The answer in a generated continuation ': 17\\n...' -> '17' (first line, after the colon)."""
    text = text.lstrip()
    text = text[1:] if text.startswith(":") else text
    first = text.strip().split("\n")[0].strip()
    return first.split()[0] if first.split() else ""


def is_correct(dataset: str, prediction: str, gold: str) -> bool:
    """The continuation must start with the ":" of "Answer:" and then give the gold answer."""
    if not prediction.lstrip().startswith(":"):
        return False
    pred = extract_prediction(prediction)
    if dataset == "gsm8k":
        return pred == gold or answers_match(pred, gold)
    return pred == gold


@torch.no_grad()
def teacher_forced(model, tokenizer, items, batch_size: int, device) -> tuple[list[float], list[bool]]:
    """Per-example answer probability (the repo metric) and whether every span token is the arg-max."""
    probs, argmax_ok = [], []
    for i in range(0, len(items), batch_size):
        ids, mask, span = make_batch(items[i: i + batch_size], tokenizer, model.group_size, device)
        logp, _, ok = span_logprobs(model(ids, mask), ids, span)
        probs.extend(logp.exp().tolist())
        argmax_ok.extend(ok.tolist())
    return probs, argmax_ok


@torch.no_grad()
def greedy_generate(model, tokenizer, items, batch_size: int, device, max_new_tokens: int = 0) -> list[str]:
    """Greedy continuations of every prompt with the cache, batched over prompts of equal token length."""
    prompts = [encode(tokenizer, prompt_text(it)) for it in items]
    lengths = [max_new_tokens or len(encode(tokenizer, answer_text(it))) for it in items]
    buckets: dict[tuple[int, int], list[int]] = {}
    for idx, (p, n) in enumerate(zip(prompts, lengths)):
        buckets.setdefault((len(p), n), []).append(idx)
    out = [""] * len(items)
    for (_, n), idxs in buckets.items():
        for i in range(0, len(idxs), batch_size):
            chunk = idxs[i: i + batch_size]
            ids = torch.tensor([prompts[k] for k in chunk], device=device)
            for k, row in zip(chunk, model.generate(ids, n).tolist()):
                out[k] = tokenizer.decode(row)
    return out


def evaluate_items(model, tokenizer, items, dataset: str, batch_size: int, device, generate: bool = True,
                   max_new_tokens: int = 0) -> dict:
    probs, argmax_ok = teacher_forced(model, tokenizer, items, batch_size, device)
    result = {"mean_prob": sum(probs) / len(probs), "teacher_forced_em": sum(argmax_ok) / len(items),
              "n": len(items), "records": []}
    preds = greedy_generate(model, tokenizer, items, batch_size, device, max_new_tokens) if generate else None
    for k, it in enumerate(items):
        rec = {"input": it["input"], "gold": it["output"], "answer_prob": probs[k]}
        if preds is not None:
            rec.update(prediction=preds[k], correct=is_correct(dataset, preds[k], it["output"]))
        result["records"].append(rec)
    if preds is not None:
        result["greedy_em"] = sum(r["correct"] for r in result["records"]) / len(items)
    return result


CONFIG_KEYS = ("dataset_name", "our_method", "model_name", "bridges", "bridge_rank", "lora_rank", "multiplier",
               "group_size", "full_finetune", "seq_len", "max_n")


def validate_eval_args(args) -> None:
    """Sizes and output path, checked before anything is loaded."""
    check_sizes(args, ("batch_size", "num_eval", "seq_len", "min_len", "max_n"))
    if args.max_new_tokens < 0:
        raise UserError(f"--max_new_tokens must be >= 0 (got {args.max_new_tokens})")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0 (got {args.threads})")
    check_generator_sizes(args.dataset_name, args.seq_len, args.min_len, args.max_n)
    check_output_path(args.result_folder, "--result_folder", kind="dir")


def checkpoint_steps(folder: Path) -> list[int]:
    steps = [int(m.group(1)) for f in folder.glob("pretrain_improved_*.pth")
             if (m := re.fullmatch(r"pretrain_improved_(\d+)\.pth", f.name))]
    return sorted(steps)


def eval_items_for(cfg: dict, args) -> list[dict]:
    split = "test" if args.test else "valid"
    gen = {"seq_len": args.seq_len or cfg["seq_len"], "max_n": args.max_n or cfg["max_n"],
           "min_len": args.min_len or 1}
    data_dir = args.data_dir or cfg.get("data_dir")
    if cfg["dataset_name"] != "gsm8k":
        data_dir = args.data_dir  # synthetic eval sets are generated (seed 1453 / 2025) unless a folder is given
    return load_split(cfg["dataset_name"], split, data_dir, num=args.num_eval, **gen)


def run_evaluation(args, transformer: bool) -> dict:
    """Evaluate every not-yet-evaluated checkpoint; returns {step: mean_prob} (the results file)."""
    folder = Path(args.checkpoint_folder)
    validate_eval_args(args)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--checkpoint_folder {folder} is a file, not a checkpoint folder")
    if not (folder / "save_configs.json").exists():
        raise UserError(f"{folder} has no save_configs.json (not a training checkpoint folder)")
    cfg = load_json_file(folder / "save_configs.json", "saved config")
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise UserError(f"saved config {folder / 'save_configs.json'} lacks {', '.join(missing)} "
                        "(not written by train.py?)")
    if check_dataset(args.dataset_name) != cfg["dataset_name"]:
        raise UserError(f"--dataset_name {args.dataset_name} but {folder} was trained on {cfg['dataset_name']}")
    if cfg["our_method"] == transformer:
        other = "evaluation.py" if transformer else "evaluation_transformer.py"
        raise UserError(f"{folder} is a {'improved' if cfg['our_method'] else 'transformer'} run; use {other}")
    steps = checkpoint_steps(folder)
    if not steps:
        raise UserError(f"no pretrain_improved_*.pth checkpoints in {folder}")
    kind = "transformer" if transformer else "improved"
    out = Path(args.result_folder)
    stem = f"{model_short(cfg['model_name'])}_{kind}"
    results_path, em_path = out / f"{stem}_results{args.tag}.json", out / f"{stem}_greedy_em{args.tag}.json"
    results = load_json_file(results_path, "results file") if results_path.exists() else {}
    extra = load_json_file(em_path, "results file") if em_path.exists() else {}
    if not isinstance(results, dict) or not isinstance(extra, dict):
        raise UserError(f"{results_path} or {em_path} is not a JSON object; remove it to re-evaluate")
    todo = [s for s in steps if str(s) not in results]
    if not todo:
        return results
    set_threads(args.threads)
    device = pick_device(args.device)
    gen = {"seq_len": args.seq_len or cfg["seq_len"], "min_len": args.min_len or 1, "max_n": args.max_n or cfg["max_n"]}
    check_generator_sizes(cfg["dataset_name"], **gen)
    items = eval_items_for(cfg, args)
    if not items:
        raise UserError(f"the {'test' if args.test else 'valid'} set of {cfg['dataset_name']} is empty")
    model, tok = build_model(cfg)
    names = [n for n, _ in model.trainable_named_parameters(cfg["full_finetune"])]
    model.to(device).eval()
    for step in tqdm(todo, desc=f"eval {kind}"):
        load_trainable(model, folder / f"pretrain_improved_{step}.pth", names)
        res = evaluate_items(model, tok, items, cfg["dataset_name"], args.batch_size, device,
                             args.generate, args.max_new_tokens)
        results[str(step)] = res["mean_prob"]
        extra[str(step)] = {k: res[k] for k in ("greedy_em", "teacher_forced_em", "mean_prob", "n") if k in res}
        lines = "".join(json.dumps(r) + "\n" for r in res["records"])
        atomic_write_text(out / f"{stem}_predictions_{step}{args.tag}.jsonl", lines)
        atomic_write_json(results_path, results)
        atomic_write_json(em_path, extra)
        print(f"[eval] step {step}: mean answer prob {res['mean_prob']:.4f}"
              + (f", greedy EM {res['greedy_em']:.4f}" if "greedy_em" in res else ""), flush=True)
    return results
