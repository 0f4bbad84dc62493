"""Evaluation of original and pruned models: WikiText-2 perplexity and zero-shot lm-eval with per-sample logs.

    python scripts/evaluate.py --model runs/table/mse --eval_data_dir ../../shared/data --limit 50

Perplexity: the text is tokenised as one stream ("\\n".join of the lines), cut into non-overlapping
``seq_len`` blocks, the first ``num_blocks`` are scored (exp of the mean next-token NLL).
lm-eval: local copies of the eight tasks through shared_utils' generated task YAMLs (offline), or the standard
lm-eval tasks online; unlike ``shared_utils.lmeval.run_lm_eval`` the per-sample log-likelihoods are written as
``samples_<task>.jsonl`` (lm-eval's ``--log_samples`` fields) so that stability can be computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from shared_utils.data import load_text_corpus
from shared_utils.errors import UserError
from shared_utils.hub import require_hub
from shared_utils.metrics import perplexity as ppl_from_nll
from shared_utils.metrics import token_nll
from shared_utils.runs import atomic_write_json, atomic_write_text

PAPER_TASKS = ("arc_challenge", "arc_easy", "boolq", "hellaswag", "openbookqa", "rte", "winogrande")
TABLE_TASKS = PAPER_TASKS + ("piqa",)


def ppl_blocks(tokenizer, source: str, seq_len: int, num_blocks: int) -> torch.Tensor:
    """[num_blocks, seq_len] token blocks from a text file (e.g. wiki.test.raw) or the embedded validation split."""
    if source != "embedded" and not Path(source).expanduser().is_file():
        raise UserError(f"perplexity text {source} does not exist (use embedded or ../../shared/data/wikitext2/raw/wiki.test.raw)")
    lines = load_text_corpus(source, split="validation")
    ids = tokenizer("\n".join(lines))["input_ids"]
    have = len(ids) // seq_len
    if have == 0:
        raise UserError(f"perplexity text {source} is shorter than one block of {seq_len} tokens")
    n = min(num_blocks, have)
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor, batch_size: int = 4, device="cpu") -> float:
    model.eval()
    nll, count = 0.0, 0
    for i in tqdm(range(0, len(blocks), batch_size), desc="perplexity", leave=False):
        ids = blocks[i : i + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits
        s, _, n = token_nll(logits, ids)
        nll, count = nll + s, count + n
    return ppl_from_nll(nll, count)


@torch.no_grad()
def token_nlls(model, blocks: torch.Tensor, batch_size: int = 4, device="cpu") -> np.ndarray:
    """Next-token NLL of every predicted token, in text order: [num_blocks * (seq_len - 1)] float64.

    Its mean is the log-perplexity of :func:`perplexity`; kept per token so that intervals (block bootstrap) and
    paired differences between two models on the same tokens can be computed.
    """
    model.eval()
    out = []
    for i in tqdm(range(0, len(blocks), batch_size), desc="token nll", leave=False):
        ids = blocks[i : i + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                reduction="none")
        out.append(nll.double().cpu().numpy())
    return np.concatenate(out)


def sample_accuracies(out_dir: str | Path, task: str, metric: str = "acc") -> list[float]:
    """Per-example ``metric`` (0/1) of ``samples_<task>.jsonl`` written by :func:`lm_eval_samples`, by doc id."""
    path = Path(out_dir) / f"samples_{task}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} does not exist (run the evaluation first)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [float(r[metric]) for r in sorted(rows, key=lambda r: r["doc_id"])]


def _sample_row(s: dict) -> dict:
    return {"doc_id": s["doc_id"], "target": s["target"], "filtered_resps": s["filtered_resps"],
            "acc": s.get("acc"), "acc_norm": s.get("acc_norm")}


def lm_eval_samples(model, tokenizer, tasks, out_dir: str | Path, data_dir: str | None = None, limit: int | None = None,
                    batch_size: int = 8, device: str = "cpu") -> dict:
    """Zero-shot lm-eval on an in-memory model; writes ``results.json`` and ``samples_<task>.jsonl`` into ``out_dir``.

    Returns ``{task: {"acc": .., "acc_norm": .., "n": ..}}`` (standard task names as keys).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from shared_utils.lmeval import write_local_tasks

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(tasks)
    if data_dir is None:
        for task in tasks:
            require_hub(task, "dataset", alternative="--eval_data_dir ../../shared/data (local task copies)")
        names, manager = {t: t for t in tasks}, TaskManager()
    else:
        include = write_local_tasks(tasks, data_dir, out_dir / "lm_eval_tasks", limit=limit)
        names, manager = {f"local_{t}": t for t in tasks}, TaskManager(include_path=str(include))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    raw = lm_eval.simple_evaluate(model=lm, tasks=list(names), task_manager=manager, log_samples=True,
                                  limit=limit if data_dir is None else None)
    summary = {}
    for lm_name, task in names.items():
        res = raw["results"].get(lm_name, {})
        row = {k.split(",")[0]: v for k, v in res.items() if "," in k and "stderr" not in k and isinstance(v, (int, float))}
        row["n"] = len(raw["samples"].get(lm_name, []))
        summary[task] = row
        text = "".join(json.dumps(_sample_row(s), default=float) + "\n" for s in raw["samples"].get(lm_name, []))
        atomic_write_text(out_dir / f"samples_{task}.jsonl", text)
    atomic_write_json(out_dir / "results.json", {"summary": summary, "versions": raw.get("versions", {}),
                                                 "n-shot": raw.get("n-shot", {})})
    return summary
