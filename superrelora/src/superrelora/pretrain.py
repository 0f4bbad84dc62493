"""The pre-training comparison (issue 15): a small Llama from scratch, full-rank warm start, then every method.

Per seed: a randomly initialised Llama (compacted vocabulary) trains full-rank for ``warm`` updates (ReLoRA's warm
start). From that one checkpoint, every row trains ``steps`` more updates on the same blocks in the same order:
full-rank, LoRA, ReLoRA (full merge + re-init + moment pruning + jagged cosine), SuperReLoRA (exact) at two merge
strengths, SuperReLoRA with the original (reference) formula, and a merge_every sweep at the chosen alpha. All
runs go through the project's own manual loop (``train.train_manual``) and merge hook.

Data: training text (WikiText-2 ``valid.txt`` + GSM8K ``train.jsonl`` questions and answers from ``--data_dir``)
and held-out text (WikiText-2 ``test.txt``) never overlap. Text is tokenized with the SmolLM2 tokenizer, the
vocabulary is compacted to the ``vocab`` most frequent training tokens (the rest map to one UNK id, which stays a
prediction target), and both streams are cut into contiguous ``seq``-token blocks.

Every (seed, row) writes ``<out_root>/seed<k>/<row>/row.json`` and is skipped when that file exists (resumable).

    python scripts/pretrain_table.py --preset cpu          # make table
    python scripts/pretrain_table.py --preset smoke        # seconds (tests)
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from pathlib import Path

import torch

from shared_utils.errors import UserError
from shared_utils.runs import RunDir, atomic_torch_save, atomic_write_json, seed_everything

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EXTRA_TRAINABLE = ["embed_tokens", "norm", "lm_head"]  # full-rank in every LoRA row, as in ReLoRA

PRESETS = {
    # 2-core CPU: 1.4 M parameters (d 128, 4 layers, vocab 2048), 16 x 64 tokens per update.
    "cpu": dict(hidden=128, layers=4, heads=4, inter=384, vocab=2048, seq=64, batch=16, warm=100, steps=120,
                merge_every=30, sweep=[15, 60], sweep_alpha=0.5, alphas=[0.1, 0.5], eval_blocks=256, lr=1e-3,
                r=8, lora_alpha=16, seeds=[0, 1, 2], bf16=False, tokenizer="smollm2"),
    # One H200: the original's llama_160m shape (d 768, 12 layers) in bf16, vocabulary compacted to 32000.
    "gpu": dict(model_config="configs/llama_160m.json", vocab=32000, seq=256, batch=16, warm=100, steps=200,
                merge_every=50, sweep=[25, 100], sweep_alpha=0.5, alphas=[0.1, 0.5], eval_blocks=512, lr=5e-4,
                r=64, lora_alpha=128, seeds=[0, 1, 2], bf16=True, tokenizer="smollm2"),
    # Seconds on CPU, byte tokenizer, for tests.
    "smoke": dict(hidden=32, layers=2, heads=2, inter=64, vocab=64, seq=16, batch=4, warm=4, steps=8, merge_every=2,
                  sweep=[4], sweep_alpha=0.5, alphas=[0.1, 0.5], eval_blocks=8, lr=3e-3, r=2, lora_alpha=4,
                  seeds=[0, 1], bf16=False, tokenizer="byte"),
}


def rows_for(p: dict) -> dict[str, dict]:
    """{row id: (label, config overrides)} of the phase after the warm start, in table order."""
    me = p["merge_every"]
    a1, a2 = p["alphas"]
    rows = {
        "full": dict(label="Full-rank", method="full", schedule="cosine"),
        "lora": dict(label="LoRA", method="lora", merge_every=0, schedule="cosine"),
        "relora": dict(label="ReLoRA", method="relora", merge_every=me, schedule="jagged_cosine"),
        f"superrelora_a{a1}": dict(label=f"SuperReLoRA exact a={a1}", method="superrelora", merge_every=me,
                                   merge_alpha=a1, schedule="cosine"),
        f"superrelora_a{a2}": dict(label=f"SuperReLoRA exact a={a2}", method="superrelora", merge_every=me,
                                   merge_alpha=a2, schedule="cosine"),
        f"reference_a{a1}": dict(label=f"SuperReLoRA reference formula a={a1}", method="superrelora",
                                 merge_every=me, merge_alpha=a1, merge_split="reference",
                                 merge_moments="reference", schedule="cosine"),
    }
    sa = p["sweep_alpha"]
    for every in p["sweep"]:
        rows[f"sweep_a{sa}_every{every}"] = dict(label=f"SuperReLoRA exact a={sa} merge_every={every}",
                                                 method="superrelora", merge_every=every, merge_alpha=sa,
                                                 schedule="cosine", sweep=True)
    return rows


# ------------------------------------------------------------------------------------------------------- data
def read_texts(data_dir: Path) -> tuple[list[str], list[str]]:
    """(training rows, held-out rows): WikiText-2 valid + GSM8K train vs WikiText-2 test (disjoint sources)."""
    from shared_utils.data import load_text_lines, read_jsonl

    wt = data_dir / "wikitext2"
    for f in (wt / "valid.txt", wt / "test.txt", data_dir / "gsm8k" / "train.jsonl"):
        if not f.is_file():
            raise UserError(f"--data_dir {data_dir}: missing {f.relative_to(data_dir)} (layout of ../shared/data)")
    train = load_text_lines(wt / "valid.txt")
    train += [f"{r['question']}\n{r['answer']}" for r in read_jsonl(data_dir / "gsm8k" / "train.jsonl",
                                                                    required=("question", "answer"))]
    return train, load_text_lines(wt / "test.txt")


def split_file(path: Path) -> tuple[list[str], list[str]]:
    """A single text file (tests): last fifth of the lines held out."""
    from shared_utils.data import load_text_lines

    lines = load_text_lines(path)
    if len(lines) < 5:
        raise UserError(f"{path}: {len(lines)} non-empty lines, need at least 5")
    cut = len(lines) * 4 // 5
    return lines[:cut], lines[cut:]


def get_tokenizer(kind: str):
    if kind == "byte":
        from superrelora.tokenizer import ByteTokenizer

        return ByteTokenizer()
    from shared_utils.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def token_stream(tokenizer, rows: list[str]) -> list[int]:
    ids: list[int] = []
    for text in rows:
        ids += tokenizer(text + "\n")["input_ids"]
    return ids


def compact_vocab(train_ids: list[int], size: int) -> dict[int, int]:
    """Original id -> compact id for the ``size - 1`` most frequent training tokens; id 0 is UNK."""
    common = [t for t, _ in Counter(train_ids).most_common(size - 1)]
    return {t: i + 1 for i, t in enumerate(common)}


def to_blocks(ids: list[int], mapping: dict[int, int], seq: int) -> list[list[int]]:
    mapped = [mapping.get(t, 0) for t in ids]
    return [mapped[i : i + seq] for i in range(0, len(mapped) - seq + 1, seq)]


def build_data(p: dict, data_dir: Path | None, text_file: Path | None, cache: Path) -> dict:
    """Blocks of compact ids (cached in ``cache``): train, eval, the vocabulary and its UNK rates."""
    if cache.is_file():
        return json.loads(cache.read_text())
    train_txt, eval_txt = split_file(text_file) if text_file else read_texts(data_dir)
    tok = get_tokenizer(p["tokenizer"])
    train_ids, eval_ids = token_stream(tok, train_txt), token_stream(tok, eval_txt)
    mapping = compact_vocab(train_ids, p["vocab"])
    train, held = to_blocks(train_ids, mapping, p["seq"]), to_blocks(eval_ids, mapping, p["seq"])
    if len(held) < p["eval_blocks"]:
        raise UserError(f"held-out text gives {len(held)} blocks of {p['seq']} tokens, need {p['eval_blocks']}")
    data = {"train": train, "eval": held[: p["eval_blocks"]], "vocab_in_train": len(set(train_ids)),
            "train_tokens": len(train_ids), "eval_tokens": p["eval_blocks"] * p["seq"],
            "unk_rate_train": sum(t not in mapping for t in train_ids) / len(train_ids),
            "unk_rate_eval": sum(b.count(0) for b in held[: p["eval_blocks"]]) / (p["eval_blocks"] * p["seq"]),
            "sources": "text file (last fifth held out)" if text_file else
            "train: WikiText-2 valid.txt + GSM8K train.jsonl; held out: WikiText-2 test.txt"}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, data)
    return data


# ------------------------------------------------------------------------------------------------------ model
def model_config(p: dict, root: Path):
    from transformers import AutoConfig, LlamaConfig

    if "model_config" in p:
        cfg = AutoConfig.for_model(**json.loads((root / p["model_config"]).read_text()))
        cfg.vocab_size = p["vocab"]
        cfg.max_position_embeddings = max(cfg.max_position_embeddings, p["seq"])
        cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = 0, None, None
        return cfg
    return LlamaConfig(vocab_size=p["vocab"], hidden_size=p["hidden"], intermediate_size=p["inter"],
                       num_hidden_layers=p["layers"], num_attention_heads=p["heads"], num_key_value_heads=p["heads"],
                       max_position_embeddings=p["seq"], tie_word_embeddings=False, pad_token_id=0,
                       bos_token_id=None, eos_token_id=None)


def train_config(p: dict, out: Path, seed: int, steps: int, **kw):
    from superrelora.config import load_config

    schedule = kw.pop("schedule", "cosine")
    over = {"model_name": "from-scratch.json", "method": kw.pop("method"), "lora_r": p["r"],
            "lora_alpha": p["lora_alpha"], "target_modules": TARGETS, "extra_trainable": EXTRA_TRAINABLE,
            "max_steps": steps, "batch_size": p["batch"], "max_length": p["seq"], "learning_rate": p["lr"],
            "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": seed, "output_dir": str(out), "logging_steps": 0,
            "bf16": p["bf16"], "scheduler.type": schedule, "scheduler.warmup_steps": max(1, steps // 20),
            "scheduler.restart_warmup_steps": max(1, kw.get("merge_every", 0) // 5), "scheduler.min_lr_ratio": 0.1,
            "relora_prune": 0.9, "merge_every": 0, **{k: v for k, v in kw.items() if k not in ("label", "sweep")}}
    if schedule == "constant":
        over["scheduler.warmup_steps"] = max(1, steps // 10)
    return load_config(None, over)


def run_phase(cfg, model, blocks: list[list[int]], device) -> dict:
    """One training phase through the project's manual loop; returns timing and the loop's Setup."""
    from superrelora.data import PadCollator
    from superrelora.train import Setup, make_hook, train_manual

    seed_everything(cfg.seed)
    setup = Setup(cfg, model.to(device).train(), None, [{"input_ids": b} for b in blocks], [], cfg.max_steps, device,
                  make_hook(cfg), PadCollator(0), RunDir(cfg.output_dir))
    for name in ("metrics.jsonl", "loss_log.csv"):
        (Path(cfg.output_dir) / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    out = train_manual(setup)
    wall = time.perf_counter() - t0
    return {"setup": setup, "wall_s": wall, "step_times": out["step_times"]}


@torch.no_grad()
def block_nll(model, blocks: list[list[int]], device, batch: int = 32, bf16: bool = False) -> list[float]:
    """Mean next-token NLL of each held-out block (every position after the first is a target)."""
    model.eval()
    out = []
    for i in range(0, len(blocks), batch):
        ids = torch.tensor(blocks[i : i + batch], device=device)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else torch.autocast(device.type, enabled=False)
        with ctx:
            logits = model(input_ids=ids).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                                                reduction="none").view(ids.size(0), -1)
        out += nll.mean(1).tolist()
    model.train()
    return out


def warm_start(p: dict, data: dict, seed: int, root: Path, seed_dir: Path, device):
    """Full-rank training from scratch for ``warm`` updates; cached as ``warm_start.pt``."""
    from transformers import AutoModelForCausalLM

    path = seed_dir / "warm_start.pt"
    seed_everything(seed)
    model = AutoModelForCausalLM.from_config(model_config(p, root), dtype=torch.float32)
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return model, json.loads((seed_dir / "warm_start.json").read_text())
    cfg = train_config(p, seed_dir / "warm_start", seed, p["warm"], method="full", schedule="constant")
    res = run_phase(cfg, model, order(data, seed, p["warm"] * p["batch"]), device)
    info = {"wall_s": res["wall_s"], "steps": p["warm"],
            "eval_nll": block_nll(model, data["eval"], device, bf16=p["bf16"])}
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    atomic_write_json(seed_dir / "warm_start.json", info)
    return model.cpu(), info


def order(data: dict, seed: int, need: int) -> list[list[int]]:
    """The seed's block order: one permutation per epoch, concatenated (warm start first, then every row)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    blocks = data["train"]
    out: list[list[int]] = []
    while len(out) < need:
        out += [blocks[i] for i in torch.randperm(len(blocks), generator=g).tolist()]
    return out[:need]


def run_row(p: dict, data: dict, seed: int, row: str, spec: dict, warm, root: Path, seed_dir: Path, device) -> dict:
    """One (seed, row): train from the warm start, evaluate per block, rank of W_final - W_warm."""
    from superrelora.model import build_model
    from superrelora.ranks import mean_spectrum, rank_report

    cfg = train_config(p, seed_dir / row, seed, p["steps"], **spec)
    seed_everything(seed)
    model = build_model(cfg, copy.deepcopy(warm))
    start = p["warm"] * p["batch"]
    res = run_phase(cfg, model, order(data, seed, start + p["steps"] * p["batch"])[start:], device)
    nll = block_nll(res["setup"].model, data["eval"], device, bf16=p["bf16"])
    report = rank_report(res["setup"].model.float(), warm.to(device), TARGETS)  # SVDs on the training device
    warm.cpu()
    losses = [r["loss"] for r in res["setup"].history]
    steady = res["step_times"][1:] or res["step_times"]
    return {"row": row, "label": spec["label"], "seed": seed, "method": cfg.effective_method,
            "schedule": spec["schedule"], "merge_every": cfg.merge_every if cfg.effective_method != "full" else 0,
            "merge_alpha": cfg.merge_alpha if cfg.effective_method == "superrelora" else None,
            "merge_split": cfg.merge_split if cfg.effective_method == "superrelora" else None,
            "merges": len([e for e in res["setup"].hook.events if "merge_norm" in e]),
            "merge_steps": [e["step"] for e in res["setup"].hook.events], "eval_nll": nll,
            "eval_loss": sum(nll) / len(nll), "perplexity": math.exp(sum(nll) / len(nll)),
            "final_train_loss": sum(losses[-10:]) / len(losses[-10:]), "wall_s": res["wall_s"],
            "steps": len(losses), "steps_per_s": len(steady) / sum(steady),
            "tokens_seen": (p["warm"] + p["steps"]) * p["batch"] * p["seq"],
            "trainable_params": sum(q.numel() for q in res["setup"].model.parameters() if q.requires_grad),
            "rank": report["summary"], "spectrum": mean_spectrum(report), "preset": p}


def run_all(preset: str, out_root: Path, data_dir: Path | None = None, text_file: Path | None = None,
            rows: list[str] | None = None, seeds: list[int] | None = None, root: Path | None = None,
            device: str = "auto", log=print, sweep_seeds: list[int] | None = None) -> list[dict]:
    """Every (seed, row) not yet on disk; returns all row records (new and cached).

    Order: the main rows for every seed first, then the merge_every sweep rows (for ``sweep_seeds``, default all
    seeds), so a run cut short still leaves complete main rows.
    """
    from shared_utils.models import pick_device

    p = dict(PRESETS[preset])
    root = root or Path(__file__).resolve().parents[2]
    dev = pick_device(device)
    if p["bf16"] and dev.type != "cuda":
        log("note: bf16 preset on CPU (dry run): autocast bf16 on CPU")
    data = build_data(p, data_dir, text_file, out_root / "data.json")
    log(f"[pretrain] data: {len(data['train'])} train blocks, {len(data['eval'])} held-out blocks of {p['seq']} "
        f"tokens; UNK rate train {data['unk_rate_train']:.3f}, held-out {data['unk_rate_eval']:.3f}")
    spec = rows_for(p)
    chosen = rows or list(spec)
    seeds = seeds if seeds is not None else p["seeds"]
    sweep_seeds = seeds if sweep_seeds is None else [s for s in sweep_seeds if s in seeds]
    jobs = [(s, r) for s in seeds for r in chosen if not spec[r].get("sweep")]
    jobs += [(s, r) for s in sweep_seeds for r in chosen if spec[r].get("sweep")]
    records, warm = [], {}
    for seed, row in jobs:
        seed_dir = out_root / f"seed{seed}"
        path = seed_dir / row / "row.json"
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("preset") != p:
                raise UserError(f"{path} was made with other preset settings than {preset!r} now; use another "
                                "--out_root or delete that run")
            records.append(rec)
            continue
        if seed not in warm:
            warm[seed], info = warm_start(p, data, seed, root, seed_dir, dev)
            log(f"[pretrain] seed {seed}: warm start ready ({info['wall_s']:.0f} s)")
        t0 = time.perf_counter()
        rec = run_row(p, data, seed, row, spec[row], warm[seed], root, seed_dir, dev)
        atomic_write_json(path, rec)
        records.append(rec)
        log(f"[pretrain] seed {seed} {row}: ppl {rec['perplexity']:.2f}, eff. rank {rec['rank']['effective_rank']:.1f}, "
            f"{rec['steps_per_s']:.2f} steps/s, {time.perf_counter() - t0:.0f} s")
    for seed in seeds:
        wpath = out_root / f"seed{seed}" / "warm_start.json"
        if wpath.is_file():
            w = json.loads(wpath.read_text())
            records.append({"row": "warm_start", "label": "Warm start only (no further training)", "seed": seed,
                            "eval_nll": w["eval_nll"], "wall_s": w["wall_s"], "steps": 0, "merges": 0,
                            "tokens_seen": p["warm"] * p["batch"] * p["seq"], "schedule": "constant (warm start)",
                            "method": "none"})
    return records


# ------------------------------------------------------------------------------------------------------ table
def assemble(records: list[dict], preset: str, command: str, wall_s: float, data: dict, results: Path,
             out_root: Path) -> dict:
    """results/pretrain_table.{json,md} (EVIDENCE.md shape) + loss-curve and merge_every-sweep PNGs."""
    import numpy as np

    from shared_utils import stats

    p = PRESETS[preset]
    spec = rows_for(p)
    by_row: dict[str, list[dict]] = {}
    for r in records:
        by_row.setdefault(r["row"], []).append(r)
    for rs in by_row.values():
        rs.sort(key=lambda r: r["seed"])
    seeds = sorted({r["seed"] for r in records if r["row"] in spec and not spec[r["row"]].get("sweep")})
    t = stats.ResultsTable(table="pretrain_table", command=command, preset=preset, scale=scale_line(p),
                           data={k: data[k] for k in ("sources", "train_tokens", "eval_tokens", "unk_rate_train",
                                                      "unk_rate_eval", "vocab_in_train")}, seeds=seeds)
    t.wall_s = round(wall_s, 1)
    labels = {"warm_start": "Warm start only (no further training)", **{k: v["label"] for k, v in spec.items()}}
    nll = {}
    for row in ["warm_start", *spec]:
        rs = by_row.get(row)
        is_sweep = row in spec and spec[row].get("sweep")
        if not rs or (not is_sweep and [r["seed"] for r in rs] != seeds):
            continue
        label = labels[row]
        m = np.array([r["eval_nll"] for r in rs])
        nll[row] = m
        loss = stats.metric_seeds_examples(m)
        ppl = {**loss, "mean": math.exp(loss["mean"]), "ci95": [math.exp(v) for v in loss["ci95"]],
               "note": "exp of eval_loss and of its interval"}
        first = rs[0]
        fields = {"schedule": first.get("schedule"), "merge_every": first.get("merge_every"),
                  "merge_alpha": first.get("merge_alpha"), "merge_split": first.get("merge_split"),
                  "merges": first.get("merges"), "trainable_params": first.get("trainable_params"),
                  "tokens_seen": first.get("tokens_seen")}
        t.add(label, "perplexity", ppl, **{k: v for k, v in fields.items() if v is not None})
        t.add(label, "eval_loss", loss)
        if row != "warm_start" and len(rs) >= 2:  # per-run metrics need >= 2 seeds for a t-interval
            t.add(label, "effective_rank_dW", stats.metric_seeds([r["rank"]["effective_rank"] for r in rs]))
            t.add(label, "steps_per_s", stats.metric_seeds([r["steps_per_s"] for r in rs]))
            t.add(label, "wall_s", stats.metric_seeds([r["wall_s"] for r in rs]))
    a1, a2 = p["alphas"]
    pairs = [("full", "lora"), (f"superrelora_a{a1}", "lora"), (f"superrelora_a{a2}", "lora"),
             (f"superrelora_a{a1}", "relora"), (f"superrelora_a{a2}", "relora"), ("relora", "lora"),
             (f"superrelora_a{a1}", f"reference_a{a1}")]
    lines = []
    for a, b in pairs:
        if a in nll and b in nll:
            c = stats.paired_diff(nll[a], nll[b])
            t.compare(labels[a], labels[b], "eval_loss", c)
            lines.append(stats.verdict_line(labels[a], labels[b], "eval_loss", c, higher_is_better=False))
            pa = [math.exp(v) for v in nll[a].mean(1)]
            pb = [math.exp(v) for v in nll[b].mean(1)]
            t.compare(labels[a], labels[b], "perplexity", stats.paired_diff(pa, pb, unit="seed"))
    gap_note = None
    if "full" in nll and "lora" in nll:
        rows_ = {r["method"]: r for r in t.to_dict()["rows"]}
        f, lo = rows_[labels["full"]]["metrics"]["perplexity"], rows_[labels["lora"]]["metrics"]["perplexity"]
        half = max((f["ci95"][1] - f["ci95"][0]) / 2, (lo["ci95"][1] - lo["ci95"][0]) / 2)
        gap = lo["mean"] - f["mean"]
        gap_note = (f"Full-rank vs LoRA perplexity gap {gap:.2f} = {gap / half:.1f} x the larger 95% half-width "
                    f"of the rows' two-level intervals ({half:.2f}; seeds and held-out blocks resampled); the issue "
                    f"asks for > 3x: {'met' if gap > 3 * half else 'NOT met'}")
        t.notes.append(gap_note)
        seed_half = max((m["ci95"][1] - m["ci95"][0]) / 2 for m in
                        (stats.metric_seeds([math.exp(v) for v in nll[k].mean(1)]) for k in ("full", "lora")))
        t.notes.append(f"Over seeds only (t-interval of the per-seed perplexities on this fixed held-out text) the "
                       f"larger half-width is {seed_half:.2f}, so the gap is {gap / seed_half:.1f} x it. The two-level "
                       "interval is wide because 256 held-out blocks vary a lot among themselves; that part is "
                       "shared by all rows, which is why the paired comparisons are much tighter.")
    t.verdict = "; ".join(lines) if lines else "no comparisons"
    t.notes += [
        f"Scale: {scale_line(p)}. Every row starts from the same per-seed warm-start checkpoint and reads the same "
        "blocks in the same order; seeds change the initialisation, the data order and the LoRA draws.",
        "Intervals: perplexity and eval_loss use a two-level bootstrap (seeds, then held-out blocks); per-run "
        "metrics (effective rank, steps/s, wall) a t-interval over seeds. Comparisons on eval_loss are paired "
        "two-level bootstraps of per-block differences; on perplexity, t-intervals of per-seed differences.",
        "effective_rank_dW: median over the targeted projections of exp(entropy of normalised singular values) of "
        "W_final - W_warmstart (base + s*B*A for adapter rows).",
        f"Held-out text: {data['eval_tokens']} tokens ({len(data['eval'])} blocks); UNK (outside the compacted "
        f"vocabulary) is {100 * data['unk_rate_eval']:.1f} % of held-out targets and stays a prediction target.",
        "steps_per_s was measured on a shared, loaded machine: compare it within a table only.",
    ]
    results.mkdir(parents=True, exist_ok=True)
    t.write(results / "pretrain_table")
    settings = ["", "## Per-row settings", "",
                "| method | schedule | merge_every | alpha | split | merges | trainable params | tokens seen | seeds |",
                "|---|---|---|---|---|---|---|---|---|"]
    for row in ["warm_start", *spec]:
        if row in nll:
            f = by_row[row][0]
            settings.append(f"| {labels[row]} | {f.get('schedule')} | {f.get('merge_every') or '-'} | "
                            f"{f.get('merge_alpha') or '-'} | {f.get('merge_split') or '-'} | {f.get('merges', 0)} | "
                            f"{f.get('trainable_params', '-')} | {f.get('tokens_seen')} | "
                            f"{','.join(str(r['seed']) for r in by_row[row])} |")
    md = results / "pretrain_table.md"
    md.write_text(md.read_text().rstrip("\n") + "\n" + "\n".join(settings) + "\n")
    plot_curves(by_row, labels, seeds[0], out_root, results / "pretrain_loss_curve.png")
    plot_sweep(by_row, p, labels, results / "merge_every_sweep.png")
    return t.to_dict()


def scale_line(p: dict) -> str:
    shape = ("llama_160m shape" if "model_config" in p else
             f"Llama d={p['hidden']} x {p['layers']} layers, {p['heads']} heads, ffn {p['inter']}")
    return (f"{shape}, vocabulary {p['vocab']} (compacted), {p['batch']} x {p['seq']} tokens per update, warm start "
            f"{p['warm']} full-rank updates, then {p['steps']} updates per row, lr {p['lr']}, r={p['r']}, "
            f"lora_alpha={p['lora_alpha']}, merge_every {p['merge_every']}, {'bf16' if p['bf16'] else 'fp32'}")


def plot_curves(by_row: dict, labels: dict, seed: int, out_root: Path, out_png: Path) -> None:
    from superrelora.plots import plot_losses

    runs = {labels[k]: out_root / f"seed{seed}" / k for k in by_row if k != "warm_start" and not k.startswith("sweep")}
    plot_losses(runs, out_png, title=f"Training loss after the warm start (seed {seed}); dotted ticks = merges",
                smooth=10)


def plot_sweep(by_row: dict, p: dict, labels: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from shared_utils import stats

    sa = p["sweep_alpha"]
    sweep_rows = [k for k in by_row if k.startswith(f"sweep_a{sa}_")]
    if not sweep_rows:
        return
    seeds = sorted({r["seed"] for k in sweep_rows for r in by_row[k]})
    pts = []
    for every in sorted([*p["sweep"], p["merge_every"]]):
        row = f"superrelora_a{sa}" if every == p["merge_every"] else f"sweep_a{sa}_every{every}"
        rs = [r for r in by_row.get(row, []) if r["seed"] in seeds]
        if rs:
            m = stats.metric_seeds_examples(np.array([r["eval_nll"] for r in rs]))
            pts.append((every, math.exp(m["mean"]), math.exp(m["ci95"][0]), math.exp(m["ci95"][1])))
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    x, y, lo, hi = (np.array(v) for v in zip(*pts))
    ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=f"SuperReLoRA exact a={sa}")
    for row, style in (("lora", "--"), ("full", ":"), ("relora", "-.")):
        rs = [r for r in by_row.get(row, []) if r["seed"] in seeds]
        if rs:
            v = math.exp(float(np.mean([r["eval_nll"] for r in rs])))
            ax.axhline(v, ls=style, color="grey", lw=1)
            ax.annotate(labels[row], (x.max(), v), fontsize=7, ha="right", va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("merge_every (updates)")
    ax.set_ylabel("held-out perplexity (95% CI)")
    ax.set_title(f"Sensitivity to merge_every (seeds {', '.join(map(str, seeds))})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
