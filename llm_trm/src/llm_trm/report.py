"""results/phase{1,2,3}_*.json + .md (EVIDENCE.md shape, shared_utils.stats) and plots from a pipeline run.

    python -m llm_trm.pipeline --preset cpu --threads 1 --data_path ../../shared/data/wikitext2   # calls this

Phase 1: the four TRAINING.md metrics per D', with 95% intervals from a cluster bootstrap over held-out
*sequences* (tokens of one sequence are correlated; every statistic is recomputed token-weighted from the
resampled sequences' sums), and ``svd_ratio`` = trained / SVD-optimum held-out cosine.
Phase 2: centred cosine, R^2, relative error, answer accuracy per predictor (bootstrap over held-out pairs) and
paired comparisons of the TRM with every baseline. Phase 3: answer accuracy of the five systems on the same
held-out prompts, paired differences, and the GRPO learning curve.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

N_BOOT = 2000


def sequence_sums(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per-sequence sums over real tokens: count, cosine, squared error, squared norm, and per-dim sums of x,
    x^2, x_hat, x_hat^2 (for the variance ratio). Lists, so they go to JSON."""
    m = mask.float()
    cos = F.cosine_similarity(x, x_hat, dim=-1) * m
    err = ((x_hat - x) ** 2).sum(-1) * m
    nrm = (x ** 2).sum(-1) * m
    mm = m.unsqueeze(-1)
    return {"count": m.sum(1).tolist(), "cos": cos.sum(1).tolist(), "sq_err": err.sum(1).tolist(),
            "sq_norm": nrm.sum(1).tolist(), "sx": (x * mm).sum(1).tolist(), "sxx": (x * x * mm).sum(1).tolist(),
            "sy": (x_hat * mm).sum(1).tolist(), "syy": (x_hat * x_hat * mm).sum(1).tolist()}


def _p1_stats(n, cos, err, nrm, sx, sxx, sy, syy):
    n_tok = n.sum()
    d = sx.shape[1]
    var = lambda s, ss: (ss.sum(0) - s.sum(0) ** 2 / n_tok) / max(n_tok - 1, 1)  # noqa: E731 - unbiased, per dim
    return {"cosine_similarity": cos.sum() / n_tok, "mse": err.sum() / (n_tok * d),
            "relative_error": float(np.sqrt(err.sum() / nrm.sum())),
            "variance_ratio": float(np.mean(var(sy, syy) / (var(sx, sxx) + 1e-8)))}


def phase1_metrics(sums: dict, ref_cos: dict | None = None) -> dict:
    """The four metrics (+ svd_ratio against ``ref_cos`` sums) with cluster-bootstrap intervals."""
    from shared_utils import stats

    arrs = [np.asarray(sums[k], dtype=np.float64) for k in ("count", "cos", "sq_err", "sq_norm", "sx", "sxx", "sy",
                                                              "syy")]
    out = {}
    for name in ("cosine_similarity", "mse", "relative_error", "variance_ratio"):
        m = stats.bootstrap_fn(lambda *a, k=name: _p1_stats(*a)[k], *arrs, n_boot=N_BOOT, unit="sequence")
        out[name] = {**m, "unit": "held-out sequence (cluster bootstrap, token-weighted)"}
    if ref_cos is not None:
        ref = np.asarray(ref_cos["cos"], dtype=np.float64)
        m = stats.bootstrap_fn(lambda c, r: c.sum() / r.sum(), arrs[1], ref, n_boot=N_BOOT)
        out["svd_ratio"] = {**m, "unit": "held-out sequence (cluster bootstrap)"}
    return out


def write_phase1(preset, s, p1, held, out_dir: Path, command: str, wall: float) -> None:
    from shared_utils import stats

    t = stats.ResultsTable("phase1_compressor", command, preset=preset, scale=_p1_scale(s, held))
    t.wall_s = round(wall, 1)
    sums = held["sums"]
    for d in s["d_values"]:
        for name in ("defaults", "random_init"):
            key = f"{name} D'={d}"
            if key in sums:
                for metric, v in phase1_metrics(sums[key], sums[f"svd D'={d}"]).items():
                    t.add(key, metric, v, d_compressed=d, compression=round(held["d_model"] / d, 1))
    for d in s["d_values"]:
        for name, label in (("svd", "SVD optimum"), ("pca", "centred PCA + mean")):
            for metric, v in phase1_metrics(sums[f"{name} D'={d}"]).items():
                t.add(f"{label} D'={d}", metric, v, d_compressed=d)
    for d in s["d_values"]:
        if f"random_init D'={d}" in sums:
            a, b = sums[f"defaults D'={d}"], sums[f"random_init D'={d}"]
            n = np.asarray(a["count"])
            diff = stats.bootstrap_fn(lambda ca, cb, c: (ca.sum() - cb.sum()) / c.sum(), np.asarray(a["cos"]),
                                      np.asarray(b["cos"]), n, n_boot=N_BOOT)
            t.compare(f"defaults D'={d}", f"random_init D'={d}", "cosine_similarity", stats.as_comparison(diff))
    ratios = [t.rows[f"defaults D'={d}"]["metrics"]["svd_ratio"]["mean"] for d in s["d_values"]]
    t.verdict = (f"README defaults (10 epochs, SVD init): svd_ratio {min(ratios):.4f}-{max(ratios):.4f} over D' in "
                 f"{s['d_values']} (goal >= 0.99 at every D': {'met' if min(ratios) >= 0.99 else 'NOT met'}); "
                 + "; ".join(stats.verdict_line(c["a"], c["b"], c["metric"], c) for c in t.comparisons))
    b = p1["runs"]["stage1b"]["results"][str(s["d_main"])]["heldout"]
    t.notes += [
        f"Held-out: {held['n_heldout_tokens']} tokens in {held['n_heldout_sequences']} sequences; train "
        f"{held['n_train_tokens']} tokens (D = {held['d_model']}, SmolLM2-135M-Instruct last layer, post-norm).",
        "`defaults` = the README flags (10 epochs, early stopping) with the SVD initialisation (default now); "
        "`random_init` = the same with `--init random` (the original's orthogonal random start). `SVD optimum` = "
        "projection on the top-D' right singular vectors of the uncentred train tokens, the exact MSE ceiling of a "
        "tied bias-free linear compressor; `centred PCA + mean` adds a bias (best affine map).",
        "svd_ratio = trained / SVD-optimum held-out cosine. Cosine can exceed the MSE optimum's slightly: the "
        "compressor is trained on MSE, the SVD solution is MSE-optimal on the *train* tokens, not cosine-optimal.",
        f"Stage 1b (thinking sequences, from the defaults D'={s['d_main']} checkpoint): held-out cosine_similarity "
        f"{b['cosine_similarity']:.4f}, mse {b['mse']:.5f}, relative_error {b['relative_error']:.4f}, "
        f"variance_ratio {b['variance_ratio']:.4f} (point values).",
        "Commands: " + " | ".join(f"`python -m llm_trm.phase1 {' '.join(r['argv'])}`" for r in p1["runs"].values())]
    t.write(out_dir / "phase1_compressor")
    _plot_phase1(t, s["d_values"], out_dir / "phase1_cosine_vs_d.png")


def _p1_scale(s, held):
    return {"d_values": s["d_values"], "num_samples": s["p1_samples"], "max_seq_length": s["p1_len"],
            "heldout_sequences": held["n_heldout_sequences"], "heldout_tokens": held["n_heldout_tokens"]}


def _plot_phase1(t, d_values, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, prefix in (("defaults (SVD init, 10 ep)", "defaults"), ("--init random (10 ep)", "random_init"),
                          ("SVD optimum", "SVD optimum"), ("centred PCA + mean", "centred PCA + mean")):
        pts = [(d, t.rows[f"{prefix} D'={d}"]["metrics"]["cosine_similarity"]) for d in d_values
               if f"{prefix} D'={d}" in t.rows]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                        yerr=np.array([[p[1]["mean"] - p[1]["ci95"][0], p[1]["ci95"][1] - p[1]["mean"]]
                                       for p in pts]).T, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("D' (compressed width)")
    ax.set_ylabel("held-out cosine similarity")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


P2_ROWS = {"mean_target": "dataset mean", "last_context_state": "last context state",
           "ridge_last_state": "ridge (last state)", "ridge_all_states": "ridge (all states)", "mlp": "MLP",
           "trm": "TRM (EMA)", "oracle": "oracle (true target)", "base_answer_only": "base model, answer-only"}


def write_phase2(preset, s, p2, out_dir: Path, command: str, wall: float) -> dict:
    from llm_trm.phase2_eval import interval_metrics, paired_r2
    from shared_utils import stats

    d = Path(p2["dir"])
    ex = {k: {m: v.numpy() for m, v in e.items()} for k, e in torch.load(d / "eval_examples.pt",
                                                                         weights_only=True).items()}
    meta = json.loads((d / "eval.json").read_text())["_meta"]
    t = stats.ResultsTable("phase2_trm", command, preset=preset,
                           scale={"n_fit": meta["n_fit"], "n_val": meta["n_val"], "n_heldout": meta["n_heldout"],
                                  "d_compressed": meta["d_compressed"], "trm_params": meta["trm_params"],
                                  "task": "addition, operands 0..99, held-out operand pairs unseen in training"})
    t.wall_s = round(wall, 1)
    for key, label in P2_ROWS.items():
        if key not in ex:
            continue
        if key == "base_answer_only":
            t.add(label, "answer_accuracy", stats.metric_examples(ex[key]["answer_correct"], n_boot=N_BOOT))
            continue
        for metric, v in interval_metrics(ex[key], N_BOOT).items():
            t.add(label, metric, v)
    for b in ("ridge_all_states", "ridge_last_state", "mlp"):
        t.compare(P2_ROWS["trm"], P2_ROWS[b], "r2", paired_r2(ex["trm"], ex[b], N_BOOT))
        t.compare(P2_ROWS["trm"], P2_ROWS[b], "answer_accuracy",
                  stats.paired_diff(ex["trm"]["answer_correct"], ex[b]["answer_correct"], n_boot=N_BOOT))
    if "base_answer_only" in ex:
        t.compare(P2_ROWS["trm"], P2_ROWS["base_answer_only"], "answer_accuracy",
                  stats.paired_diff(ex["trm"]["answer_correct"], ex["base_answer_only"]["answer_correct"],
                                    n_boot=N_BOOT))
    t.auto_verdict({"r2": True, "answer_accuracy": True})
    cmds = " | ".join([f"`python -m llm_trm.phase2_datagen {' '.join(p2['datagen_command'])}`",
                       f"`python -m llm_trm.phase2 {' '.join(p2['train_command'])}`"])
    t.notes += [
        f"Target: the compressed (D'={meta['d_compressed']}) last-layer state after \"...</think>\\nThe answer is \", "
        f"whose next token is the answer's first token in {meta['target_hit_rate']:.1%} of the pairs (base model, "
        "teacher-forced thinking \"a + b = c. The answer is c.\"). Context: the compressed user-turn states.",
        f"{meta['n_fit']} fit + {meta['n_val']} validation (best epoch, ridge lambda, MLP epoch) training pairs; "
        f"{meta['n_heldout']} held-out pairs whose operand pairs never occur in training, in either order.",
        "centred_cosine = mean over held-out pairs of cos(y_hat - mu, y - mu), mu = training-mean target; r2 = "
        "1 - SSE / SST with SST around mu; relative_error = ||Y_hat - Y||_F / ||Y||_F; answer_accuracy = "
        "argmax lm_head(W^T y_hat) is the answer's first token. Intervals: bootstrap over held-out pairs "
        f"({N_BOOT} resamples); comparisons are paired on the same pairs.",
        f"The training-mean target carries {meta['mean_energy_fraction']:.1%} of the targets' energy, which is why "
        "raw cosine is not reported (a constant scores near 1).",
        f"TRM {meta['trm_params']:,} params; MLP {meta['baselines']['mlp']['params']:,} params (hidden "
        f"{meta['baselines']['mlp']['hidden']}); ridge lambdas {meta['baselines']['ridge_last_state']['lambda']} "
        f"(last) / {meta['baselines']['ridge_all_states']['lambda']} (all states).",
        "base model, answer-only = the frozen LLM's first token after the same prompt with an empty think block.",
        "Commands: " + cmds]
    t.write(out_dir / "phase2_trm")
    return meta


P3_ROWS = {"base_answer_only": "base, answer-only", "base_cot_prompt": "base, CoT prompt",
           "compressor_round_trip": "compressor round trip", "phase2_trm": "phase-2 TRM",
           "phase3_trm": "phase-3 TRM (GRPO)"}


def write_phase3(preset, s, p3, out_dir: Path, command: str, wall: float) -> None:
    from shared_utils import stats

    d = Path(p3["dir"])
    per = json.loads((d / "eval_examples.json").read_text())
    rep = json.loads((d / "eval.json").read_text())
    meta = rep["_meta"]
    t = stats.ResultsTable("phase3_grpo", command, preset=preset,
                           scale={"num_train": meta["num_train"], "num_eval": meta["num_eval"], "steps": meta["steps"],
                                  "group_size": meta["group_size"]})
    t.wall_s = round(wall, 1)
    metrics = {"answer_accuracy": "", "first_digit_accuracy": "first_digit/"}
    for key, label in P3_ROWS.items():
        for metric, pre in metrics.items():
            t.add(label, metric, stats.metric_examples(per[pre + key], n_boot=N_BOOT))
    for metric, pre in metrics.items():
        for b in ("phase2_trm", "base_answer_only", "compressor_round_trip", "base_cot_prompt"):
            t.compare(P3_ROWS["phase3_trm"], P3_ROWS[b], metric,
                      stats.paired_diff(per[pre + "phase3_trm"], per[pre + b], n_boot=N_BOOT))
    t.auto_verdict({"answer_accuracy": True, "first_digit_accuracy": True})
    curve = meta["curve"]
    t.notes += [
        f"{meta['num_eval']} held-out addition prompts (operands 0..99, operand pairs unseen in phase-2 and phase-3 "
        f"training); {meta['steps']} GRPO steps on {meta['num_train']} training prompts, G = {meta['group_size']}, "
        f"sigma = {meta['sigma']:.3g}. Accuracy = the greedy answer after \"The answer is \" is right (TRM systems: "
        "the first token comes from argmax lm_head(W^T latent), the LLM continues). first_digit_accuracy = the "
        "answer's first digit is right: the part the latent decides; it is also the GRPO reward (`--reward "
        "first_digit`).",
        "Learning curve (held-out first-digit / answer accuracy by GRPO step): "
        + ", ".join(f"{c['step']}: {c['heldout_accuracy']['first_digit']:.3f} / {c['heldout_accuracy']['answer']:.3f}"
                    for c in curve) + " (plot phase3_learning_curve.png).",
        "Command: `python -m llm_trm.phase3 " + " ".join(p3["command"]) + "`"]
    t.write(out_dir / "phase3_grpo")
    _plot_phase3(meta, out_dir / "phase3_learning_curve.png")


def _plot_phase3(meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rewards = [r for r in meta["rewards"] if r is not None]
    ax.plot(range(1, len(rewards) + 1), rewards, alpha=0.6, label="mean reward (training batch)")
    for k in ("first_digit", "answer"):
        ax.plot([c["step"] for c in meta["curve"]], [c["heldout_accuracy"][k] for c in meta["curve"]], marker="o",
                label=f"held-out {k.replace('_', '-')} accuracy ({meta['num_eval']} prompts)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward / accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tables(preset, s, p1, held, p2, p3, out_dir: Path, command: str, wall: float) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_phase1(preset, s, p1, held, out_dir, command, wall)
    write_phase2(preset, s, p2, out_dir, command, wall)
    write_phase3(preset, s, p3, out_dir, command, wall)
