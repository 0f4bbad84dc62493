"""Zero-shot lm-eval on a saved model directory, online (standard task names) or on local task copies.

Online, ``run_lm_eval(model_dir, ["arc_easy", ...])`` calls ``lm_eval.simple_evaluate`` with the standard
tasks. Offline, pass ``data_dir`` (laid out like ``../shared/data``): each task is converted to a small
jsonl with lm-eval's own prompt (``doc_to_text``), choices and gold index, and scored through a generated
task YAML (``dataset_path: json``) with the same metrics (acc, acc_norm). Scores match lm-eval's tasks on
the same examples, except HellaSwag, whose local copy is lightly preprocessed text (see data README).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from shared_utils.errors import UserError
from shared_utils.hub import require_hub

LOCAL_TASKS = ("arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "rte", "winogrande", "piqa")
# lm-eval's metrics per task (acc_norm where the standard task reports it)
_NORM_TASKS = {"arc_easy", "arc_challenge", "hellaswag", "openbookqa", "piqa"}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"lm-eval local data: {path} is missing")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{i}: malformed JSON ({exc.msg})") from None
    return rows


def _arc(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        labels = [c["label"] for c in r["question"]["choices"]]
        out.append({
            "query": f"Question: {r['question']['stem']}\nAnswer:",
            "choices": [c["text"] for c in r["question"]["choices"]],
            "gold": labels.index(r["answerKey"]),
        })
    return out


def _arc_easy(d: Path) -> list[dict]:
    return _arc(_jsonl(d / "arc_easy" / "ARC-Easy-Test.jsonl"))


def _arc_challenge(d: Path) -> list[dict]:
    docs = _arc(_jsonl(d / "arc_challenge" / "ARC-Challenge-Test.jsonl"))
    missing = d / "arc_challenge" / "ARC-Challenge-Test.missing2.llmfoundry.jsonl"
    if missing.is_file():  # two questions GenMC lacks, at their official 0-based positions 59 and 88
        extra = [{"query": r["query"] + "\nAnswer:", "choices": r["choices"], "gold": r["gold"]} for r in _jsonl(missing)]
        for pos, doc in zip((59, 88), extra):
            docs.insert(pos, doc)
    return docs


def _boolq(d: Path) -> list[dict]:
    out = []
    for r in _jsonl(d / "boolq" / "boolq.jsonl"):
        passage, _, question = r["query"].removeprefix("Passage: ").partition("\nQuestion: ")
        out.append({"query": f"{passage}\nQuestion: {question.rstrip('?')}?\nAnswer:", "choices": ["no", "yes"], "gold": r["gold"]})
    return out


def _hellaswag_pre(text: str) -> str:
    # lm-eval hellaswag `preprocess`: strip, " [title]" -> ". ", drop [...] tags, collapse double spaces
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(d: Path) -> list[dict]:
    path = d / "hellaswag" / "hellaswag_val_full.txt"
    if not path.is_file():
        raise UserError(f"lm-eval local data: {path} is missing")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) % 6:
        raise UserError(f"{path}: expected 6 lines per task, got {len(lines)} lines")
    return [
        {"query": _hellaswag_pre(lines[i]), "choices": [_hellaswag_pre(x) for x in lines[i + 2 : i + 6]], "gold": int(lines[i + 1])}
        for i in range(0, len(lines), 6)
    ]


def _mc_rows(rows: list[dict]) -> list[dict]:
    return [{"query": r["query"], "choices": r["choices"], "gold": int(r["gold"])} for r in rows]


def _openbookqa(d: Path) -> list[dict]:
    return _mc_rows(_jsonl(d / "openbookqa" / "openbook_qa.jsonl"))


def _rte(d: Path) -> list[dict]:
    path = d / "rte" / "dev.tsv"
    if not path.is_file():
        raise UserError(f"lm-eval local data: {path} is missing")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        {"query": f"{r['sentence1']}\nQuestion: {r['sentence2']} True or False?\nAnswer:", "choices": ["True", "False"], "gold": int(r["label"])}
        for r in rows
    ]


def _winogrande(d: Path) -> list[dict]:
    return [
        {"gold": int(r["gold"]), "context_options": r["context_options"], "continuation": r["continuation"]}
        for r in _jsonl(d / "winogrande" / "winogrande.jsonl")
    ]


def _piqa(d: Path) -> list[dict]:
    rows = _jsonl(d / "piqa" / "valid.jsonl")
    labels_path = d / "piqa" / "valid-labels.lst"
    if not labels_path.is_file():
        raise UserError(f"lm-eval local data: {labels_path} is missing")
    labels = [int(x) for x in labels_path.read_text().split()]
    if len(labels) != len(rows):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(rows)} PIQA rows")
    return [{"query": f"Question: {r['goal']}\nAnswer:", "choices": [r["sol1"], r["sol2"]], "gold": g} for r, g in zip(rows, labels)]


CONVERTERS: dict[str, Callable[[Path], list[dict]]] = {
    "arc_easy": _arc_easy, "arc_challenge": _arc_challenge, "boolq": _boolq, "hellaswag": _hellaswag,
    "openbookqa": _openbookqa, "rte": _rte, "winogrande": _winogrande, "piqa": _piqa,
}


def local_task_docs(task: str, data_dir: str | Path) -> list[dict]:
    """The converted documents of one local task (query/choices/gold; winogrande: partial-scoring form)."""
    if task not in CONVERTERS:
        raise UserError(f"no local copy of task '{task}' (local tasks: {', '.join(LOCAL_TASKS)})")
    return CONVERTERS[task](Path(data_dir).expanduser())


def _task_yaml(task: str, data_file: Path) -> str:
    metrics = ["acc", "acc_norm"] if task in _NORM_TASKS else ["acc"]
    if task == "winogrande":  # partial scoring: one context per option, shared continuation
        fields = "doc_to_text: gold\ndoc_to_target: continuation\ndoc_to_choice: context_options\n"
    else:
        fields = "doc_to_text: query\ndoc_to_target: gold\ndoc_to_choice: choices\n"
    metric_list = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n" for m in metrics)
    return (
        f"task: local_{task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file))}\n"
        f"test_split: test\noutput_type: multiple_choice\n{fields}metric_list:\n{metric_list}metadata:\n  version: 1.0\n"
    )


def write_local_tasks(tasks: Iterable[str], data_dir: str | Path, out_dir: str | Path, limit: int | None = None) -> Path:
    """Convert ``tasks`` into jsonl files plus lm-eval task YAMLs under ``out_dir``; returns the include dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        docs = local_task_docs(task, data_dir)
        if limit is not None:
            docs = docs[:limit]
        data_file = (out_dir / f"{task}.jsonl").resolve()
        data_file.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        (out_dir / f"local_{task}.yaml").write_text(_task_yaml(task, data_file), encoding="utf-8")
    return out_dir


def _summarise(raw: dict, names: dict[str, str]) -> dict:
    out = {}
    for lm_name, task in names.items():
        res = raw.get("results", {}).get(lm_name, {})
        row = {k.split(",")[0]: v for k, v in res.items() if "," in k and "stderr" not in k and isinstance(v, (int, float))}
        n = raw.get("n-samples", {}).get(lm_name, {})
        if n:
            row["n"] = n.get("effective", n.get("original"))
        out[task] = row
    return out


def _sample_row(s: dict) -> dict:
    """The per-sample fields a results table needs (lm-eval's --log_samples record, trimmed)."""
    row = {"doc_id": s.get("doc_id"), "target": s.get("target")}
    for key in ("acc", "acc_norm"):
        if key in s:
            row[key] = float(s[key])
    if "filtered_resps" in s:
        row["filtered_resps"] = s["filtered_resps"]
    return row


def run_lm_eval(
    model_dir: Any,
    tasks: Iterable[str],
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int | str = 8,
    device: str = "cpu",
    dtype: str = "float32",
    output_path: str | Path | None = None,
    work_dir: str | Path | None = None,
    tokenizer: Any = None,
    log_samples: bool = False,
    samples_dir: str | Path | None = None,
) -> dict:
    """Zero-shot lm-eval; returns ``{task: {"acc": .., "acc_norm": .., "n": .., ["samples": [...]]}}``.

    Args:
        model_dir: a saved Hugging Face model directory (with tokenizer), a Hub id (online), or an in-memory
            ``PreTrainedModel`` (then ``tokenizer`` is required; nothing is written to disk).
        tasks: standard lm-eval names (arc_easy, arc_challenge, boolq, hellaswag, openbookqa, rte, winogrande, piqa).
        data_dir: local copies laid out like ../shared/data; ``None`` uses lm-eval's Hub datasets (online only).
        limit: score only the first ``limit`` examples of each task.
        output_path: if given, the lm-eval results JSON (without per-sample logs) is written there.
        work_dir: where converted local tasks go (default: next to ``output_path`` or a temp dir).
        tokenizer: the tokenizer of an in-memory model.
        log_samples: add ``"samples"`` to each task's row: one ``{"doc_id", "target", "acc"[, "acc_norm"]}`` per
            example, sorted by ``doc_id`` (per-example correctness for bootstrap intervals and paired comparisons).
        samples_dir: if given (implies ``log_samples``), also write ``samples_<task>.jsonl`` there.
    """
    import tempfile

    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise UserError("lm-eval is not installed: pip install 'lm-eval>=0.4.8' (make setup installs it)") from exc
    tasks = list(tasks)
    log_samples = log_samples or samples_dir is not None
    if data_dir is None:
        for task in tasks:
            require_hub(task, "dataset", alternative="--eval_data_dir pointing at local task copies (../shared/data)")
        names = {t: t for t in tasks}
        manager = TaskManager()
    else:
        if work_dir is None:
            work_dir = (Path(output_path).parent / "lm_eval_tasks") if output_path else Path(tempfile.mkdtemp(prefix="lm_eval_tasks_"))
        include = write_local_tasks(tasks, data_dir, work_dir, limit=limit)
        names = {f"local_{t}": t for t in tasks}
        manager = TaskManager(include_path=str(include))
    common = dict(tasks=list(names), task_manager=manager, limit=limit if data_dir is None else None,
                  log_samples=log_samples)
    if isinstance(model_dir, (str, Path)):
        raw = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype={dtype}",
                                      batch_size=batch_size, device=device, **common)
    else:
        if tokenizer is None:
            raise UserError("run_lm_eval on an in-memory model needs its tokenizer (tokenizer=...)")
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model_dir, tokenizer=tokenizer, batch_size=batch_size, device=device)
        raw = lm_eval.simple_evaluate(model=lm, **common)
    if raw is None:  # non-zero ranks in distributed runs
        return {}
    summary = _summarise(raw, names)
    if log_samples:
        for lm_name, task in names.items():
            rows = sorted((_sample_row(s) for s in raw.get("samples", {}).get(lm_name, [])),
                          key=lambda r: r["doc_id"])
            summary[task]["samples"] = rows
            summary[task].setdefault("n", len(rows))
            if samples_dir is not None:
                from shared_utils.runs import atomic_write_text

                text = "".join(json.dumps(r, default=float) + "\n" for r in rows)
                atomic_write_text(Path(samples_dir) / f"samples_{task}.jsonl", text)
    if output_path:
        from shared_utils.runs import atomic_write_json

        keep = {k: raw[k] for k in ("results", "versions", "n-shot", "n-samples", "config") if k in raw}
        keep["summary"] = {t: {k: v for k, v in row.items() if k != "samples"} for t, row in summary.items()}
        atomic_write_json(output_path, keep)
    return summary
