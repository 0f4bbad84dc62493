"""README Experiment 2 on the solvable GSM8K twin: Hier BD3-LM vs Flat BD3-LM vs AR (flat, hier), with intervals.

For each model and seed: train on twin train, then on the test split (2-4 operations) and the longer split
(one operation more than training): exact answer accuracy from sampling (first-hitting for BD3-LM, token-by-token
for AR, KV cache on), exec-only NLL per token (NELBO bound for BD3-LM, exact for AR), plan-token accuracy of
the sampled plans (Hier rows), NFEs and seconds per sample. The speed-quality curve re-samples the test split
with the DDPM-cache sampler at T denoising steps per block. Every per-run result is written to
`<run_dir>/<model>_s<seed>/result.json` and skipped when present (resumable); the tables are assembled from
them with shared_utils.stats (two-level bootstrap over seeds and problems; paired differences).

python scripts/twin_table.py --preset cpu                         # `make table` (CPU, ~50 min per seed here)
python scripts/twin_table.py --preset gpu                         # larger model, sized for one H200 (~5 min)
python scripts/twin_table.py --preset smoke --run_dir runs/twin_smoke --out_dir runs/twin_smoke/results
"""

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from hier_bd3lm.config import layout_of, parse_overrides
from hier_bd3lm.guards import check_output_dir
from hier_bd3lm.records import read_records
from shared_utils import stats
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "scripts" / "data_prep"))
from generate_twin import write_twin  # noqa: E402

MODELS = {  # in run order (the comparisons the paper is about first)
    "Hier BD3-LM": ["algo=bd3lm", "training.hierarchical.enabled=true"],
    "Flat BD3-LM": ["algo=bd3lm", "training.hierarchical.enabled=false"],
    "AR (hier)": ["algo=ar", "training.hierarchical.enabled=true"],
    "AR (flat)": ["algo=ar", "training.hierarchical.enabled=false"],
}
PRESETS = {  # steps x batch, model, slots; cpu sized from a measured AR run (see README)
    "cpu": dict(model="micro_twin", steps=700, batch_size=32, lr=2e-3, seeds="0,1,2", n_train=20000, n_test=500,
                n_longer=500, curve_T="1,2,4", curve_n=200, device="cpu"),
    "gpu": dict(model="tiny", steps=2000, batch_size=128, lr=1e-3, seeds="0,1,2", n_train=50000, n_test=1000,
                n_longer=1000, curve_T="1,2,4", curve_n=1000, device="cuda"),
    "smoke": dict(model="micro", steps=20, batch_size=8, lr=2e-3, seeds="0,1", n_train=200, n_test=16, n_longer=16,
                  curve_T="1,2", curve_n=8, device="cpu"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--run_dir", default=None, help="per-run outputs (default runs/twin_<preset>)")
    p.add_argument("--out_dir", default=str(PROJECT / "results"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--lengths", default="80,48,56", help="question,plan,exec slot lengths (tokens)")
    p.add_argument("--block_size", type=int, default=8)
    p.add_argument("--tokenizer", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval_batch", type=int, default=125, help="problems sampled together")
    p.add_argument("--nucleus_p", type=float, default=1e-6, help="1e-6 keeps only the top token (greedy decoding)")
    p.add_argument("--only_runs", action="store_true", help="train/evaluate the missing runs, do not assemble")
    for k in ("model", "steps", "batch_size", "lr", "seeds", "n_train", "n_test", "n_longer", "curve_T", "curve_n",
              "device"):
        p.add_argument(f"--{k}", default=None, type=type(PRESETS["cpu"][k]))
    a = p.parse_args(argv)
    for k, v in PRESETS[a.preset].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.run_dir = a.run_dir or str(PROJECT / "runs" / f"twin_{a.preset}")
    for k in ("steps", "batch_size", "n_train", "n_test", "n_longer", "curve_n", "eval_batch", "block_size"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
    try:
        a.seed_list = [int(s) for s in a.seeds.split(",")]
        a.T_list = [int(t) for t in a.curve_T.split(",") if t]
        a.slots = [int(v) for v in a.lengths.split(",")]
    except ValueError:
        raise UserError("--seeds, --curve_T and --lengths take comma-separated integers") from None
    if len(a.slots) != 3 or min(a.slots) < 1:
        raise UserError(f"--lengths needs three positive integers (question,plan,exec), got {a.lengths}")
    bad = [m for m in a.models.split(",") if m not in MODELS]
    if bad:
        raise UserError(f"unknown --models {bad}; choose from {list(MODELS)}")
    return a


def run_name(model: str, seed: int) -> str:
    return model.replace(" ", "_").replace("(", "").replace(")", "") + f"_s{seed}"


def overrides(a, model, seed, save, data_dir) -> list[str]:
    q, p, e = a.slots
    model_group = "micro" if a.model == "micro_twin" else a.model
    size = (["model.hidden_size=64", "model.n_blocks=3", "model.n_heads=4", "model.cond_dim=32"]
            if a.model == "micro_twin" else [])
    return [f"model={model_group}", *size, "model.dropout=0.0", f"block_size={a.block_size}",
            f"training.hierarchical.question_len={q}", f"training.hierarchical.plan_len={p}",
            f"training.hierarchical.exec_len={e}", f"training.hierarchical.total_len={q + p + e}",
            f"trainer.max_steps={a.steps}", f"trainer.val_check_interval={max(1, a.steps // 3)}",
            "trainer.log_every_n_steps=25", f"loader.batch_size={a.batch_size}", "loader.eval_batch_size=64",
            f"optim.lr={a.lr}", f"lr_scheduler.num_warmup_steps={max(1, a.steps // 20)}", "training.ema=0.99",
            f"data.train_path={data_dir / 'twin_train.json'}", f"data.test_path={data_dir / 'twin_test.json'}",
            f"data.tokenizer={a.tokenizer}", "data.limit_valid=64", "trainer.limit_val_batches=1", f"seed={seed}",
            f"trainer.num_threads={a.threads}", f"trainer.device={a.device}", f"checkpointing.save_dir={save}",
            *MODELS[model]]


def one_run(a, model, seed, data_dir: Path, splits) -> dict:
    from hier_bd3lm.evaluate import evaluate_nll, load_checkpoint, sample_eval
    from hier_bd3lm.pipeline import checkpoint_path, encode
    from hier_bd3lm.train import train

    save = Path(a.run_dir) / run_name(model, seed)
    out_file = save / "result.json"
    if out_file.is_file():
        return json.loads(out_file.read_text())
    cfg = parse_overrides(overrides(a, model, seed, save, data_dir))
    t0 = time.perf_counter()
    train(cfg)
    train_s = time.perf_counter() - t0
    net, tok, cfg, _ = load_checkpoint(checkpoint_path(cfg), cfg.trainer.device)
    dev = cfg.trainer.device
    res = {"model": model, "seed": seed, "train_seconds": train_s, "steps": a.steps, "vocab_size": tok.vocab_size,
           "params": sum(p.numel() for p in net.backbone.parameters())}
    for split in ("test", "longer"):
        enc = encode(cfg, splits[split], tok)
        nll = evaluate_nll(net, enc, 64, mc_samples=2, seed=0, device=dev, per_example=True)
        s = sample_eval(net, enc, tok, a.eval_batch, -(-len(enc) // a.eval_batch), a.nucleus_p, True, seed=seed,
                        device=dev)
        res[split] = {"correct": [bool(r["strict_ok"]) for r in s["samples"]],
                      "invalid": s["invalid_strict"], "exec_nll": nll["per_example"]["exec_nll"],
                      "plan_token_acc": [r.get("plan_token_acc") for r in s["samples"]],
                      "seconds_per_sample": s["seconds_per_sample"], "nfe": s["nfe_per_sample"],
                      "examples": [{k: r[k] for k in ("id", "plan", "execution", "gold", "strict")} for r in s["samples"][:3]]}
    if net.algo == "bd3lm":  # speed-quality curve: DDPM-cache sampler with T steps per block
        enc = encode(cfg, splits["test"][: a.curve_n], tok)
        res["curve"] = {}
        for T in a.T_list:
            s = sample_eval(net, enc, tok, a.eval_batch, -(-len(enc) // a.eval_batch), a.nucleus_p, True, "ddpm_cache", T,
                            seed=seed, device=dev)
            res["curve"][str(T)] = {"correct": [bool(r["strict_ok"]) for r in s["samples"]], "nfe": s["nfe_per_sample"],
                                    "seconds_per_sample": s["seconds_per_sample"]}
    res["eval_seconds"] = time.perf_counter() - t0 - train_s
    atomic_write_json(out_file, res)
    return res


def pipeline_ceilings(a, data_dir, splits) -> dict:
    """Truncation and gold-through-the-pipeline ceilings for both layouts, with the tokenizer the runs use."""
    from hier_bd3lm.data import truncation_and_ceiling
    from hier_bd3lm.pipeline import record_texts
    from hier_bd3lm.tokenizer import fit_tokenizer

    tok = fit_tokenizer(a.tokenizer, record_texts(splits["train"]))
    out = {}
    for layout_name, hier in (("hier", "true"), ("flat", "false")):
        cfg = parse_overrides(overrides(a, "Hier BD3-LM", 0, Path(a.run_dir) / "_", data_dir)
                              + [f"training.hierarchical.enabled={hier}"])
        for split in ("test", "longer"):
            out[f"{layout_name}/{split}"] = truncation_and_ceiling(splits[split], tok, layout_of(cfg))
    return out


def assemble(a, runs, ceil, splits, wall_s):
    models = [m for m in a.models.split(",") if all((m, s) in runs for s in a.seed_list)]
    t = stats.ResultsTable(table="twin_hier_vs_flat_vs_ar", command="python " + " ".join(sys.argv), preset=a.preset)
    # the runs are resumable: wall_s is the sum of every used run's training + evaluation seconds
    t.wall_s = round(sum(runs[(m, s)]["train_seconds"] + runs[(m, s)]["eval_seconds"] for m in models
                         for s in a.seed_list), 1)
    mat = lambda m, split, key: [runs[(m, s)][split][key] for s in a.seed_list]  # noqa: E731
    timing = []
    for m in models:
        t.add(m, "accuracy", stats.metric_seeds_examples([[float(v) for v in r] for r in mat(m, "test", "correct")]))
        t.add(m, "accuracy_longer", stats.metric_seeds_examples([[float(v) for v in r] for r in mat(m, "longer", "correct")]))
        t.add(m, "exec_nll", stats.metric_seeds_examples(mat(m, "test", "exec_nll")))
        if "Hier" in m:
            t.add(m, "plan_token_accuracy", stats.metric_seeds_examples(mat(m, "test", "plan_token_acc")))
        t.add(m, "nfe", nfe_metric(runs[(m, a.seed_list[0])]["test"]["nfe"], a.n_test))
        secs = [runs[(m, s)]["test"]["seconds_per_sample"] for s in a.seed_list]
        if len(secs) > 1:  # a t-interval over seeds; with one seed the time goes to the notes (no interval)
            t.add(m, "seconds_per_sample", stats.metric_seeds(secs))
        else:
            timing.append(f"{m} {secs[0]:.4f} s")
    gold = ceil["hier/test"]["correct"]
    t.add("gold execution through the slots (ceiling)", "accuracy", stats.metric_examples([float(v) for v in gold]))
    t.add("gold execution through the slots (ceiling)", "accuracy_longer",
          stats.metric_examples([float(v) for v in ceil["hier/longer"]["correct"]]))
    common = Counter(r["answer_numerical"] for r in splits["train"]).most_common(1)[0][0]
    t.add(f"most frequent train answer ({common})", "accuracy",
          stats.metric_examples([float(r["answer_numerical"] == common) for r in splits["test"]]))
    t.add(f"most frequent train answer ({common})", "accuracy_longer",
          stats.metric_examples([float(r["answer_numerical"] == common) for r in splits["longer"]]))
    pairs = [("Hier BD3-LM", "Flat BD3-LM"), ("Hier BD3-LM", "AR (hier)"), ("AR (hier)", "AR (flat)")]
    verdict = []
    for x, y in pairs:
        if x in models and y in models:
            for metric, split, key, hib in (("accuracy", "test", "correct", True), ("accuracy_longer", "longer", "correct", True),
                                            ("exec_nll", "test", "exec_nll", False)):
                if metric == "exec_nll" and x.startswith("AR") != y.startswith("AR"):
                    continue  # a NELBO bound against an exact NLL is no paired comparison
                c = stats.paired_diff([[float(v) for v in r] for r in mat(x, split, key)],
                                      [[float(v) for v in r] for r in mat(y, split, key)])
                t.compare(x, y, metric, c)
                verdict.append(stats.verdict_line(x, y, metric, c, higher_is_better=hib))
    t.verdict = "; ".join(verdict) + (" (exec_nll of BD3 rows is a NELBO upper bound, of AR rows exact)")
    q, p, e = a.slots
    t.notes += [
        f"Task: the solvable GSM8K twin (scripts/data_prep/generate_twin.py): {a.n_train} train problems with 2-4 "
        f"operations, {a.n_test} test problems (2-4 operations), {a.n_longer} longer problems (5 operations); "
        "disjoint by question text. Gold abstract plan (no numbers) and gold execution per problem.",
        f"Scale: model {a.model} ({runs[(models[0], a.seed_list[0])]['params']:,} parameters), {a.steps} steps x batch "
        f"{a.batch_size}, lr {a.lr}, slots Q/P/E = {q}/{p}/{e} (Flat: Q/E = {q}/{e}), L' = {a.block_size}, "
        f"{len(a.seed_list)} seeds ({a.seeds}); tokenizer {a.tokenizer} compacted to the ids seen in train.",
        "Truncation (share of problems whose segment did not fit its slot): " + "; ".join(
            f"{k}: question {v['truncated_question']:.3f}, plan {v['truncated_plan'] if v['truncated_plan'] is not None else 'n/a'}"
            f", exec {v['truncated_exec']:.3f}, ceiling {v['ceiling']:.3f}" for k, v in ceil.items()) + ".",
        "accuracy / accuracy_longer: exact `####` answer, unit seed+example (two-level bootstrap). exec_nll: per "
        "execution content token given the gold question (+ gold plan for Hier rows); BD3 rows are NELBO upper bounds "
        "(t ~ U[1e-3, 1], 2 draws), AR rows exact. plan_token_accuracy: sampled plan vs gold plan, content tokens. "
        "nfe: forward passes per problem (first-hitting and AR: one per generated token); seconds_per_sample with the KV "
        "cache, batch of " f"{a.eval_batch} problems, {a.threads} thread(s). Decoding: greedy (nucleus p = "
        f"{a.nucleus_p} keeps only the top token); the first-hitting sampler still unmasks positions in random order.",
    ]
    if timing:
        t.notes.append("Seconds per sample with the KV cache (one seed, so no interval): " + "; ".join(timing) + ".")
    out = Path(a.out_dir)
    t.write(out / "twin_hier_vs_flat_vs_ar")
    curve_table(a, runs, models, out)


def nfe_metric(nfe: float, n: int) -> dict:
    """NFEs are the same for every problem (a fixed schedule), so the interval is the point itself."""
    return stats.metric_examples([float(nfe)] * n)


def curve_table(a, runs, models, out):
    bd3 = [m for m in models if "BD3" in m and all("curve" in runs[(m, s)] for s in a.seed_list)]
    if not bd3:
        return
    t = stats.ResultsTable(table="twin_speed_quality", command="python " + " ".join(sys.argv), preset=a.preset)
    pts = {}
    for m in bd3:
        for T in a.T_list:
            rows = [[float(v) for v in runs[(m, s)]["curve"][str(T)]["correct"]] for s in a.seed_list]
            name = f"{m}, DDPM-cache T={T}/block"
            t.add(name, "accuracy", stats.metric_seeds_examples(rows))
            nfe = runs[(m, a.seed_list[0])]["curve"][str(T)]["nfe"]
            t.add(name, "nfe", nfe_metric(nfe, a.curve_n))
            pts.setdefault(m, []).append((nfe, sum(map(sum, rows)) / sum(map(len, rows))))
    ar = [m for m in models if m.startswith("AR")]
    for m in ar:
        n = a.curve_n
        rows = [[float(v) for v in runs[(m, s)]["test"]["correct"][:n]] for s in a.seed_list]
        t.add(f"{m} (token by token)", "accuracy", stats.metric_seeds_examples(rows))
        t.add(f"{m} (token by token)", "nfe", nfe_metric(runs[(m, a.seed_list[0])]["test"]["nfe"], n))
    t.notes.append(f"First {a.curve_n} test problems, greedy decoding (nucleus p = {a.nucleus_p}); T = denoising steps per block of L' = {a.block_size} tokens "
                   "(T = L' equals the token count of the first-hitting sampler).")
    t.verdict = "speed-quality curve (descriptive; no pairwise claim)"
    t.write(out / "twin_speed_quality")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for m, p in pts.items():
            ax.plot([x[0] for x in p], [x[1] for x in p], "o-", label=m)
        for m in ar:
            rows = [runs[(m, s)]["test"]["correct"][: a.curve_n] for s in a.seed_list]
            ax.plot([runs[(m, a.seed_list[0])]["test"]["nfe"]], [sum(map(sum, rows)) / sum(map(len, rows))], "s", label=m)
        ax.set(xlabel="forward passes per problem (NFE)", ylabel="exact accuracy", title="Twin: speed vs quality")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "twin_speed_quality.png", dpi=120)
        plt.close(fig)
    except ImportError:
        pass


@cli_main
def main(argv=None):
    a = parse_args(argv)
    check_output_dir(a.run_dir, "--run_dir")
    check_output_dir(a.out_dir, "--out_dir")
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    data_dir = Path(a.run_dir) / "data"
    if not (data_dir / "twin_longer.json").is_file():
        write_twin(data_dir, a.n_train, a.n_test, a.n_longer, seed=0)
    splits = {s: read_records(data_dir / f"twin_{s}.json") for s in ("train", "test", "longer")}
    ceil_file = Path(a.run_dir) / "ceilings.json"
    if ceil_file.is_file():
        ceil = json.loads(ceil_file.read_text())
    else:
        ceil = pipeline_ceilings(a, data_dir, splits)
        atomic_write_json(ceil_file, ceil)
    low = {k: v["ceiling"] for k, v in ceil.items() if v["ceiling"] < 0.98}
    if low:
        raise UserError(f"slots {a.lengths} give a gold-through-pipeline ceiling below 0.98: {low}; enlarge --lengths")
    runs = {}
    for seed in a.seed_list:
        for m in a.models.split(","):
            print(f"== {m} seed {seed}", flush=True)
            runs[(m, seed)] = one_run(a, m, seed, data_dir, splits)
            r = runs[(m, seed)]
            print(f"   accuracy {sum(r['test']['correct']) / len(r['test']['correct']):.3f} "
                  f"longer {sum(r['longer']['correct']) / len(r['longer']['correct']):.3f} "
                  f"train {r['train_seconds']:.0f}s eval {r['eval_seconds']:.0f}s", flush=True)
    if not a.only_runs:
        assemble(a, runs, ceil, splits, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
