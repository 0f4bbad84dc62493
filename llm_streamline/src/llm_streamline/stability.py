"""Stability (the paper's agreement metric) from OpenCompass PPL predictions or lm-eval per-sample output.

For N samples of one dataset (spec 3): sigma_i = population std of the ORIGINAL model's per-choice PPL values,
w = softmax(sigma) over samples, agree_i = 1 when the pruned and the original model are both right or both
wrong, stability = sum_i w_i * agree_i. The released ``calculate_stability.py`` instead returns the sum of the
*first* M = sum_i agree_i weights in sample order (spec bug 1); ``reference_compat=True`` reproduces that.

Inputs: an OpenCompass ``predictions/<model>`` directory (one JSON per dataset, ``{"0": {"label: A": {"PPL": ..},
.., "prediction": .., "gold": ..}, ..}``) or a directory of lm-eval sample files ``samples_<task>*.jsonl``
(``filtered_resps`` = [[loglik, is_greedy], ..] per choice, ``target`` = gold index), for which the per-choice
"PPL" is the negative log-likelihood of the choice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from shared_utils.errors import UserError

# the original's hard-coded datasets and label sets
OPENCOMPASS_LABELS = {
    "piqa": [0, 1], "BoolQ": [0, 1], "C3": [0, 1, 2, 3], "commonsense_qa": list("ABCDE"), "hellaswag": [0, 1, 2, 3],
    "race-middle": list("ABCD"), "cmnli": ["contradiction", "entailment", "neutral"], "WSC": ["A", "B"],
    "chid-test": list(range(7)), "race-high": list("ABCD"),
}
FAMILIES = {"cmmlu-": ("CMMLU", list("ABCD")), "lukaemon_mmlu_": ("MMLU", list("ABCD"))}


def softmax_weights(sigma) -> np.ndarray:
    s = np.asarray(sigma, dtype=np.float64)
    e = np.exp(s - s.max())
    return e / e.sum()


def stability(orig_ppl, orig_pred, pruned_pred, gold, reference_compat: bool = False) -> float:
    """Weighted agreement of correctness between the original and the pruned model.

    Args:
        orig_ppl: per sample, the original model's PPL (or NLL) for every choice.
        orig_pred, pruned_pred, gold: per-sample predicted / gold labels.
        reference_compat: return the original code's sum of the first M weights (M = number of agreements).
    """
    n = len(gold)
    if not (len(orig_ppl) == len(orig_pred) == len(pruned_pred) == n) or n == 0:
        raise UserError(f"stability needs the same non-zero number of samples, got {len(orig_ppl)}, "
                        f"{len(orig_pred)}, {len(pruned_pred)}, {n}")
    w = softmax_weights([np.std(np.asarray(p, dtype=np.float64)) for p in orig_ppl])
    agree = np.array([(o == g) == (p == g) for o, p, g in zip(orig_pred, pruned_pred, gold)], dtype=bool)
    if reference_compat:
        return float(w[: int(agree.sum())].sum())
    return float(w[agree].sum())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None


def _opencompass_rows(orig: dict, pruned: dict, labels, path: Path):
    ppl, op, pp, gold = [], [], [], []
    for i in range(len(pruned)):  # the original iterates range(len(pruned)) and indexes both by str(i)
        key = str(i)
        if key not in orig or key not in pruned:
            raise UserError(f"{path.name}: sample {key} missing from one of the two prediction sets")
        try:
            ppl.append([orig[key][f"label: {lab}"]["PPL"] for lab in labels])
        except KeyError as exc:
            raise UserError(f"{path.name}: sample {key} has no PPL for {exc}") from None
        op.append(str(orig[key]["prediction"]))
        pp.append(str(pruned[key]["prediction"]))
        gold.append(str(orig[key]["gold"]))
    return ppl, op, pp, gold


def _infer_labels(data: dict) -> list[str]:
    first = next(iter(data.values()), {})
    return [k[len("label: "):] for k in first if isinstance(k, str) and k.startswith("label: ")]


def opencompass_stability(orig_dir: Path, pruned_dir: Path, reference_compat: bool = False) -> dict:
    """{dataset: stability} for every OpenCompass PPL prediction file present in both directories."""
    out, families = {}, {}
    for path in sorted(pruned_dir.glob("*.json")):
        name = path.stem
        other = orig_dir / path.name
        if not other.is_file():
            continue
        family = next((f for f in FAMILIES if name.startswith(f)), None)
        pruned, orig = _read_json(path), _read_json(other)
        labels = FAMILIES[family][1] if family else OPENCOMPASS_LABELS.get(name) or _infer_labels(orig)
        if not labels:
            continue  # not a PPL-mode prediction file
        value = stability(*_opencompass_rows(orig, pruned, labels, path), reference_compat=reference_compat)
        if family:
            families.setdefault(FAMILIES[family][0], []).append(value)
        else:
            out[name] = value
    for fam, values in families.items():
        out[fam] = float(np.mean(values))
    return out


def read_lmeval_samples(path: Path) -> dict[int, dict]:
    """{doc_id: {"nll": [..], "pred": argmax loglik, "gold": target}} from one lm-eval samples jsonl."""
    rows = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            ll = [float(x[0]) if isinstance(x, (list, tuple)) else float(x) for x in r["filtered_resps"]]
            gold = int(r["target"]) if str(r["target"]).lstrip("-").isdigit() else r["target"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}:{lineno}: not an lm-eval multiple-choice sample ({exc})") from None
        rows[int(r["doc_id"])] = {"nll": [-x for x in ll], "pred": int(np.argmax(ll)), "gold": gold}
    return rows


def _task_of(path: Path) -> str:
    return re.sub(r"_\d{4}-\d{2}-\d{2}T.*$", "", path.stem.removeprefix("samples_"))


def lmeval_stability(orig_dir: Path, pruned_dir: Path, reference_compat: bool = False) -> dict:
    """{task: stability} for every ``samples_<task>*.jsonl`` present in both directories (matched by task)."""
    orig_files = {_task_of(p): p for p in sorted(orig_dir.glob("samples_*.jsonl"))}
    out = {}
    for path in sorted(pruned_dir.glob("samples_*.jsonl")):
        task = _task_of(path)
        if task not in orig_files:
            continue
        o, p = read_lmeval_samples(orig_files[task]), read_lmeval_samples(path)
        ids = sorted(p)
        if any(i not in o for i in ids):
            raise UserError(f"{task}: the pruned samples have doc ids the original samples lack")
        out[task] = stability([o[i]["nll"] for i in ids], [o[i]["pred"] for i in ids], [p[i]["pred"] for i in ids],
                              [o[i]["gold"] for i in ids], reference_compat)
    return out


def directory_stability(orig_dir, pruned_dir, reference_compat: bool = False) -> dict:
    """Dispatch on what the directories hold: lm-eval sample files or OpenCompass prediction JSON."""
    orig_dir, pruned_dir = Path(orig_dir), Path(pruned_dir)
    for d in (orig_dir, pruned_dir):
        if not d.is_dir():
            raise UserError(f"prediction directory {d} does not exist")
    if any(pruned_dir.glob("samples_*.jsonl")):
        result = lmeval_stability(orig_dir, pruned_dir, reference_compat)
    else:
        result = opencompass_stability(orig_dir, pruned_dir, reference_compat)
    if not result:
        raise UserError(f"no prediction files common to {orig_dir} and {pruned_dir} "
                        "(expected OpenCompass <dataset>.json or lm-eval samples_<task>.jsonl)")
    return result
