"""Reproduce the README's experiments at CPU scale and write results/*.md + .json + PNGs.

(1) Plan abstraction (README Experiment 1) for each generator: rule-based plans on all of GSM8K train/test and
    SmolLM2-135M-Instruct plans on a test subset; categories 0 / 1-2 / 3-5 / >5 numbers, exec/plan ratio.
(2) Hier [Q->P->E] vs Flat [Q->E] BD3-LM vs AR (same DiT size, same data/tokenizer/steps; Experiment 2):
    validation NLL per content token (BD3 = NELBO upper bound, AR = exact), exec-only NLL given the gold
    question (+ plan), accuracy from sampling (strict #### / flexible) with invalid counts, seconds per sample
    and NFEs with the KV cache on and off; loss curves.

python scripts/make_table.py --data_path ../../shared/data/gsm8k --steps 300      # `make table`
"""

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json, atomic_write_text, plot_loss_curve

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from hier_bd3lm.analysis import analyze, plot  # noqa: E402
from hier_bd3lm.config import parse_overrides  # noqa: E402
from hier_bd3lm.evaluate import evaluate_nll, load_checkpoint, sample_eval  # noqa: E402
from hier_bd3lm.plans import build_record, make_backend, rule_plan  # noqa: E402
from hier_bd3lm.train import checkpoint_path, encode, train  # noqa: E402

MODELS = {
    "Hier BD3-LM": ["algo=bd3lm", "training.hierarchical.enabled=true"],
    "Flat BD3-LM": ["algo=bd3lm", "training.hierarchical.enabled=false"],
    "AR (flat)": ["algo=ar", "training.hierarchical.enabled=false"],
    "AR (hier)": ["algo=ar", "training.hierarchical.enabled=true"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", default=str(PROJECT.parent.parent / "shared" / "data" / "gsm8k"))
    p.add_argument("--out_dir", default=str(PROJECT / "results"))
    p.add_argument("--run_dir", default=str(PROJECT / "runs" / "table"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--model", default="cpu_small")
    p.add_argument("--lengths", default="64,64,128", help="question,plan,exec slot lengths")
    p.add_argument("--block_size", type=int, default=16)
    p.add_argument("--train_limit", type=int, default=None)
    p.add_argument("--eval_n", type=int, default=128, help="test problems for the NLL columns")
    p.add_argument("--sample_n", type=int, default=16, help="test problems sampled for accuracy")
    p.add_argument("--timing_n", type=int, default=2, help="problems sampled with and without KV cache")
    p.add_argument("--smollm2_n", type=int, default=8, help="test problems given SmolLM2 plans (0 = skip)")
    p.add_argument("--models", default="Hier BD3-LM,Flat BD3-LM,AR (flat),AR (hier)")
    p.add_argument("--tokenizer", default="smollm2-135m")
    p.add_argument("--max_vocab", type=int, default=2048, help="most frequent compacted ids kept (rest -> UNK); 0 = all seen")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared CPU)")
    p.add_argument("--from_json", action="store_true", help="only re-render the .md/.png from results/*.json")
    return p.parse_args(argv)


def plan_tables(args, run_dir: Path, out_dir: Path) -> dict:
    from shared_utils.data import load_gsm8k

    res, data = {}, {}
    for split in ("train", "test"):
        rows = load_gsm8k(split, args.data_path)
        recs = [build_record(split, i, r, rule_plan(r["answer"])) for i, r in enumerate(rows)]
        atomic_write_text(run_dir / "data" / f"gsm8k_hierarchical_{split}.json", json.dumps(recs, indent=1))
        data[split] = recs
        res[f"rule ({split}, n={len(recs)})"] = analyze(recs)
    plot(res[f"rule (test, n={len(data['test'])})"], out_dir / "plan_abstraction_rule.png")
    if args.smollm2_n:
        rows = load_gsm8k("test", args.data_path, args.smollm2_n)
        t0 = time.perf_counter()
        plans = make_backend("hf", "smollm2-135m", 0.0, 1.0, 96, "readme").generate(rows)
        secs = time.perf_counter() - t0
        recs = [build_record("test", i, r, p) for i, (r, p) in enumerate(zip(rows, plans))]
        atomic_write_text(run_dir / "data" / "smollm2_plans_test.json", json.dumps(recs, indent=1))
        a = analyze(recs)
        a["seconds"] = secs
        res[f"SmolLM2-135M-Instruct greedy (test, n={len(recs)})"] = a
        plot(a, out_dir / "plan_abstraction_smollm2.png")
    return res, data


def train_and_eval(args, name, extra, run_dir: Path, data) -> dict:
    q, p, e = (int(v) for v in args.lengths.split(","))
    save = run_dir / name.replace(" ", "_").replace("(", "").replace(")", "")
    cfg = parse_overrides([
        f"model={args.model}", f"block_size={args.block_size}", f"training.hierarchical.question_len={q}",
        f"training.hierarchical.plan_len={p}", f"training.hierarchical.exec_len={e}",
        f"training.hierarchical.total_len={q + p + e}", f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}", "trainer.log_every_n_steps=10", f"loader.batch_size={args.batch_size}",
        f"optim.lr={args.lr}", f"lr_scheduler.num_warmup_steps={max(1, args.steps // 10)}", "training.ema=0.999",
        f"data.train_path={run_dir / 'data' / 'gsm8k_hierarchical_train.json'}",
        f"data.test_path={run_dir / 'data' / 'gsm8k_hierarchical_test.json'}", f"data.tokenizer={args.tokenizer}", f"data.max_vocab={args.max_vocab or 'null'}",
        "data.limit_valid=32", "trainer.limit_val_batches=2", f"seed={args.seed}", f"trainer.num_threads={args.threads}",
        "trainer.device=cpu", f"checkpointing.save_dir={save}", *([f"data.limit_train={args.train_limit}"] if args.train_limit else []),
        *extra])
    t0 = time.perf_counter()
    train(cfg)
    train_secs = time.perf_counter() - t0
    model, tok, cfg, _ = load_checkpoint(checkpoint_path(cfg))
    enc = encode(cfg, data["test"][: args.eval_n], tok)
    nll = evaluate_nll(model, enc, 16, mc_samples=2, seed=0)
    gen = enc.content_mask.bool()
    nll["unk_fraction"] = float((enc.input_ids[gen] == tok.unk_id).float().mean())
    from hier_bd3lm.config import layout_of
    from hier_bd3lm.data import truncation_and_ceiling

    ceil = truncation_and_ceiling(data["test"][: args.eval_n], tok, layout_of(cfg))
    ceil.pop("correct")
    nll["pipeline"] = ceil  # truncation rates and the gold-through-the-slots ceiling of the accuracy columns
    samp = sample_eval(model, enc, tok, min(8, args.sample_n), -(-args.sample_n // min(8, args.sample_n)), 1.0, True,
                       seed=0)
    timing = {}
    for cache in (True, False):
        timing[cache] = sample_eval(model, enc, tok, 1, args.timing_n, 1.0, cache, seed=0)
    same = [a["execution"] for a in timing[True]["samples"]] == [b["execution"] for b in timing[False]["samples"]]
    return {"name": name, "overrides": extra, "train_seconds": train_secs, "steps": args.steps,
            "vocab_size": tok.vocab_size, "nll": nll, "accuracy": {k: v for k, v in samp.items() if k != "samples"},
            "examples": samp["samples"][:3],
            "timing": {"kv_cache_s_per_sample": timing[True]["seconds_per_sample"],
                       "no_cache_s_per_sample": timing[False]["seconds_per_sample"],
                       "nfe_per_sample": timing[True]["nfe_per_sample"], "same_tokens": same},
            "metrics": str(save / "metrics.jsonl")}


def fmt(v, d=3):
    return "n/a" if v is None or v != v else f"{v:.{d}f}"


def ratio(r: dict) -> str:
    # the fork divides by (plan mean + 1e-10); with number-free plans that is "infinite", not 1e11
    return "inf (plans have 0 numbers)" if r["plan_numbers_mean"] == 0 else f"{r['number_ratio']:.1f}x"


def write_tables(args, meta, plans, models, out_dir: Path):
    args = argparse.Namespace(**args) if isinstance(args, dict) else args
    lines = ["# Plan abstraction (README Experiment 1)", "", f"Command: `{meta['command']}`  ", f"Data: {meta['data']}  ",
             f"Machine: {meta['machine']}; date {meta['date']}", "",
             "| generator | n | plan numbers | exec numbers | exec/plan ratio | 0 | 1-2 | 3-5 | >5 | % plans >5 numbers |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in plans.items():
        c = [v["percent"] for v in r["categories"].values()]
        lines.append(f"| {name} | {r['n']} | {r['plan_numbers_mean']:.2f} | {r['exec_numbers_mean']:.2f} | "
                     f"{ratio(r)} | {c[0]:.1f}% | {c[1]:.1f}% | {c[2]:.1f}% | {c[3]:.1f}% | "
                     f"{r['pct_plans_gt5_numbers']:.1f}% |")
    lines += ["", "Numbers counted with the fork's regex (`\\d+`, calculator annotations included). Figures: "
              "`plan_abstraction_rule.png`, `plan_abstraction_smollm2.png`."]
    atomic_write_text(out_dir / "plan_abstraction.md", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / "plan_abstraction.json",
                      {**meta, "results": {k: {a: b for a, b in v.items() if not a.startswith("_")} for k, v in plans.items()}})
    lines = ["# Hier vs Flat vs AR on GSM8K (README Experiment 2, CPU scale)", "", f"Command: `{meta['command']}`  ",
             f"Data: {meta['data']}  ", f"Machine: {meta['machine']}; date {meta['date']}  ",
             f"Scale: model `{args.model}`, slots Q/P/E = {args.lengths}, L' = {args.block_size}, {args.steps} steps x "
             f"batch {args.batch_size}, lr {args.lr}; SmolLM2 tokenizer compacted to the {args.max_vocab} most frequent "
             f"ids (UNK share of test content tokens: {models[0]['nll']['unk_fraction']:.3f}); NLL on {args.eval_n} test "
             f"problems (2 time draws each); accuracy on {args.sample_n} (first-hitting sampler for BD3-LM, ancestral for AR; nucleus p = 1).", "",
             "| model | val NLL / content token | kind | exec-only NLL / token | plan NLL / token | acc strict | acc flexible "
             "| invalid (strict) | s/sample KV on | s/sample KV off | NFEs | same tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        n, a, t = m["nll"], m["accuracy"], m["timing"]
        kind = "upper bound (NELBO)" if n["bound"] else "exact"
        lines.append(f"| {m['name']} | {fmt(n['nll_per_content_token'])} | {kind} | {fmt(n['exec_nll_per_token'])} | "
                     f"{fmt(n['plan_nll_per_token'])} | {a['acc_strict']:.3f} | {a['acc_flexible']:.3f} | "
                     f"{a['invalid_strict']}/{a['n']} | {t['kv_cache_s_per_sample']:.2f} | {t['no_cache_s_per_sample']:.2f} | "
                     f"{t['nfe_per_sample']:.0f} | {t['same_tokens']} |")
    lines += ["", "Exec-only NLL is conditioned on the gold question and plan for the Hier rows, on the question only "
              "for the Flat rows. Loss curves: `loss_curves.png`."]
    for m in models:
        c = m["nll"].get("pipeline")
        if c:
            lines.append(f"- {m['name']}: truncated question {c['truncated_question']:.3f}, plan "
                         f"{c['truncated_plan'] if c['truncated_plan'] is not None else 'n/a'}, exec "
                         f"{c['truncated_exec']:.3f}; gold execution through the slots scores {c['ceiling']:.3f}"
                         + (" (below 0.98: the accuracy columns are bounded by it; enlarge --lengths)"
                            if c["ceiling"] < 0.98 else ""))
    atomic_write_text(out_dir / "hier_vs_flat_vs_ar.md", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / "hier_vs_flat_vs_ar.json", {**meta, "args": vars(args), "models": models})
    plot_loss_curve([(m["name"], m["metrics"]) for m in models], out_dir / "loss_curves.png")


@cli_main
def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir, run_dir = Path(args.out_dir), Path(args.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        plans = json.loads((out_dir / "plan_abstraction.json").read_text())
        res = json.loads((out_dir / "hier_vs_flat_vs_ar.json").read_text())
        meta = {k: plans[k] for k in ("command", "data", "machine", "date")}
        write_tables(res["args"], meta, plans["results"], res["models"], out_dir)
        return
    meta = {"command": "python " + " ".join(sys.argv), "data": f"GSM8K from {args.data_path} (rule-based plans)",
            "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, CPU".strip(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    plans, data = plan_tables(args, run_dir, out_dir)
    models = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        models.append(train_and_eval(args, name, MODELS[name], run_dir, data))
        write_tables(args, meta, plans, models, out_dir)
    print((out_dir / "hier_vs_flat_vs_ar.md").read_text())


if __name__ == "__main__":
    main()
