"""Markdown / JSON / PNG tables from a :mod:`llm_trm.pipeline` run (``make table``).

    python -c "import json; from llm_trm.report import write_tables; \\
               write_tables(json.load(open('runs/table/details.json')), __import__('pathlib').Path('results'))"
"""

from __future__ import annotations

from pathlib import Path

from shared_utils.runs import atomic_write_json, atomic_write_text


def _f(x, nd=4):
    return "–" if x is None else f"{x:.{nd}f}"


def _header(prov: dict) -> list[str]:
    return [f"Command: `{prov['command']}` (from `llm_trm/`)  ",
            f"Stage-1a text: {prov['data']}; stage 1b, phase 2 and phase 3 use generated addition problems  ",
            f"Model: {prov['model']}  ",
            f"Machine: {prov['machine']}; date {prov['date']}; whole pipeline {prov['wall_seconds']:.0f} s", ""]


def phase1_md(p1: dict, prov: dict) -> str:
    long = "long" in p1["rows"][0]
    lines = ["# Phase 1: compressor vs the truncated-SVD optimum (held-out tokens)", "", *_header(prov),
             f"D = {p1['d_model']} (SmolLM2-135M-Instruct last layer, post-norm). Train tokens "
             f"{p1['n_train_tokens']}, held-out tokens {p1['n_heldout_tokens']} (padding excluded). "
             "`trained` = README defaults (10 epochs, early stopping on held-out MSE); "
             + ("`trained, 100 ep` = same with `--num_epochs 100 --no_early_stopping`; " if long else "")
             + "`SVD opt.` = projection on the top-D' right singular vectors of the uncentered train tokens "
             "(the best any tied bias-free linear compressor can do); `PCA+mean` = centered PCA (best affine map, "
             "an 'add a bias' reference). `orig. estimate` is the original README's rough guess for D=3072 at the "
             "same ratio, not a measurement.", "",
             "| D' | ratio | params | trained cos | " + ("trained cos, 100 ep | " if long else "")
             + "SVD opt. cos | PCA+mean cos | trained/SVD cos | trained mse | SVD opt. mse | rel. err | "
             "var. ratio | steps | orig. estimate cos |",
             "|---|---|---|---|" + ("---|" if long else "") + "---|---|---|---|---|---|---|---|---|"]
    for r in p1["rows"]:
        best = r.get("long", r["default"])
        lines.append(
            f"| {r['d_compressed']} | {r['compression']:.0f}x | {r['params']:,} | {_f(r['default']['cosine_similarity'])} | "
            + (f"{_f(r['long']['cosine_similarity'])} | " if long else "")
            + f"{_f(r['svd']['cosine_similarity'])} | {_f(r['pca']['cosine_similarity'])} | "
            f"{_f(r['cos_ratio_to_svd'])} | {_f(best['mse'], 5)} | {_f(r['svd']['mse'], 5)} | "
            f"{_f(best['relative_error'])} | {_f(best['variance_ratio'])} | {best['optimizer_steps']} | "
            f"{_f(r['original_estimate_cos'], 2)} |")
    b = p1["stage1b"]
    lines += ["", f"Stage 1b (thinking sequences, from the D'={b['d_compressed']} stage-1a checkpoint, "
              f"{b['epochs_run']} epochs): held-out cos {_f(b['cosine_similarity'])}, mse {_f(b['mse'], 5)}, "
              f"rel. err {_f(b['relative_error'])}, var. ratio {_f(b['variance_ratio'])}.", "",
              "Phase-1 commands run by the pipeline (`python -m llm_trm.phase1 ...`):", ""]
    lines += [f"- `{' '.join(a)}`" for a in [*p1["commands"].values(), p1["stage1b_command"]]]
    return "\n".join(lines) + "\n"


def phase2_md(p2: dict, prov: dict) -> str:
    rep, meta = p2["report"], p2["report"]["_meta"]
    names = {"trm": "SequenceTRM (EMA weights)", "mean_target": "dataset-mean target",
             "last_context_state": "last context state (compressed)", "ridge_last_state": "ridge from last context state"}
    lines = ["# Phase 2: TRM from pre-thinking context to the post-thinking state (held-out pairs)", "",
             *_header(prov),
             f"Teacher-forced pairs from generated 1-digit addition problems; target = compressed state at the last "
             f"token of `</think>` (D'={meta['d_compressed']}); {meta['n_train']} train / {meta['n_heldout']} held-out "
             f"pairs; TRM {meta['trm_params']:,} params, best epoch {meta['best_epoch']}. First-token agreement = "
             "argmax lm_head(W^T y_hat) == argmax lm_head(h_post); the most frequent target token covers "
             f"{meta['heldout_post_token_mode_rate']:.3f} of the held-out pairs.", "",
             "| predictor | cosine | mse | relative error | first-token agreement |", "|---|---|---|---|---|"]
    for k, label in names.items():
        m = rep[k]
        lines.append(f"| {label} | {_f(m['cosine_similarity'])} | {_f(m['mse'], 5)} | {_f(m['relative_error'])} | "
                     f"{_f(m['first_token_agreement'], 3)} |")
    lines += ["", f"- `python -m llm_trm.phase2_datagen {' '.join(p2['datagen_command'])}`",
              f"- `python -m llm_trm.phase2 {' '.join(p2['train_command'])}`"]
    return "\n".join(lines) + "\n"


def phase3_md(p3: dict, prov: dict) -> str:
    rep, meta = p3["report"], p3["report"]["_meta"]
    labels = {"base_no_think": "base, answer-only prompt", "base_cot_prompt": "base, CoT prompt",
              "compressor_round_trip": "compressor round trip (first token)",
              "phase2_trm": "phase-2 TRM (first token)", "phase3_trm": "phase-3 TRM after GRPO (first token)"}
    lines = ["# Phase 3: latent-action GRPO, held-out accuracy", "", *_header(prov),
             f"Task: 1-digit addition ('What is a + b? Answer with only the number.' and word-problem variants), "
             f"{meta['num_train']} training prompts, {meta['num_eval']} held-out prompts, greedy decoding; "
             f"G={meta['group_size']}, sigma={meta['sigma']:.4f}, {meta['steps']} GRPO steps.", "",
             "| system | accuracy |", "|---|---|"]
    lines += [f"| {label} | {_f(rep[k], 3)} |" for k, label in labels.items()]
    lines += ["", f"- `python -m llm_trm.phase3 {' '.join(p3['command'])}`"]
    return "\n".join(lines) + "\n"


def plot_cosine(p1: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = [r["d_compressed"] for r in p1["rows"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(ds, [r["default"]["cosine_similarity"] for r in p1["rows"]], "o-", label="trained (README defaults)")
    if "long" in p1["rows"][0]:
        ax.plot(ds, [r["long"]["cosine_similarity"] for r in p1["rows"]], "s-", label="trained, 100 epochs")
    ax.plot(ds, [r["svd"]["cosine_similarity"] for r in p1["rows"]], "k--", label="truncated-SVD optimum")
    ax.plot(ds, [r["pca"]["cosine_similarity"] for r in p1["rows"]], ":", label="centered PCA + mean")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.set_xlabel("D' (compressed width)")
    ax.set_ylabel("held-out cosine similarity")
    ax.set_title(f"Phase 1 on SmolLM2-135M (D={p1['d_model']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tables(out: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    prov = out["provenance"]
    atomic_write_text(results / "phase1_compressor.md", phase1_md(out["phase1"], prov))
    atomic_write_json(results / "phase1_compressor.json", {"provenance": prov, **out["phase1"]})
    atomic_write_text(results / "phase2_trm.md", phase2_md(out["phase2"], prov))
    atomic_write_json(results / "phase2_trm.json", {"provenance": prov, **out["phase2"]})
    atomic_write_text(results / "phase3_grpo.md", phase3_md(out["phase3"], prov))
    atomic_write_json(results / "phase3_grpo.json", {"provenance": prov, **out["phase3"]})
    plot_cosine(out["phase1"], results / "phase1_cosine_vs_d.png")
