"""End to end: phase 1 (1a sweep, SVD and random init, SVD/PCA references, 1b) -> phase-2 pairs + TRM and its
baselines -> phase-3 GRPO -> tables with 95% intervals (results/*.json + .md, EVIDENCE.md shape).

    python -m llm_trm.pipeline --preset smoke                       # `make smoke`: writes runs/smoke/summary.json
    python -m llm_trm.pipeline --preset cpu --threads 1 --data_path ../../shared/data/wikitext2   # `make table`
    python -m llm_trm.pipeline --preset gpu --data_path ../../shared/data/wikitext2              # one H200, ~5 min

Every step is an ordinary call of a phase entry point (the argv is recorded in the tables). The runner is
resumable: a step whose output already exists under runs/<preset>/ is not run again, so an interrupted
`make table` continues where it stopped (delete runs/<preset>/ to start over).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llm_trm import phase1, phase2, phase2_datagen, phase3
from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json

# The original README's "Expected Results" (its own rough estimates, D=3072), keyed by compression ratio.
ORIGINAL_ESTIMATE = {48: 0.85, 24: 0.92, 12: 0.96, 6: 0.98, 3: 0.99}

PRESETS = {
    # `make smoke`: every phase on the real model, tiny sizes.
    "smoke": dict(out="runs/smoke", d_values=[48], d_main=48, p1_samples=32, p1_len=48, p1_random=False,
                  p1b_samples=24, p2_samples=48, p2_epochs=2, p2_batch=16, p2_nsup=2, p2_n=2, p2_T=2, p2_lr=1e-3,
                  p2_heads=4, p3_train=8, p3_eval=8, p3_pool=10, p3_epochs=1, p3_batch=4, p3_group=4, p3_lr=1e-4,
                  p3_cot=16, p3_eval_every=1, data_path=None),
    # `make table`: 2,000 train / 500 held-out pairs; TRM n=2, T=2, N_sup=3 (CPU-sized); GRPO on 200 held-out prompts.
    "cpu": dict(out="runs/cpu", d_values=[12, 24, 48, 96, 192], d_main=48, p1_samples=240, p1_len=96,
                p1_random=True, p1b_samples=200, p1b_from="svd", p2_refit="svd", p2_samples=2500, p2_epochs=10, p2_batch=64,
                p2_nsup=3, p2_n=2, p2_T=2, p2_lr=1e-3, p2_heads=4, p3_train=96, p3_eval=200, p3_pool=500, p3_epochs=1,
                p3_batch=8,
                p3_group=8, p3_lr=1e-3, p3_cot=48, p3_eval_every=4, data_path=None),
    # `gpu`: the original's TRM recursion (n=6, T=3, N_sup=8) and more epochs / GRPO steps; sized for ~5 min on an H200.
    "gpu": dict(out="runs/gpu", d_values=[12, 24, 48, 96, 192], d_main=96, p1_samples=2000, p1_len=128,
                p1_random=True, p1b_samples=400, p1b_from="svd", p2_refit="svd", p2_samples=2500, p2_epochs=60,
                p2_batch=64,
                p2_nsup=8, p2_n=6, p2_T=3, p2_lr=1e-3, p2_heads=8, p3_train=1024, p3_eval=500, p3_pool=500, p3_epochs=4,
                p3_batch=32,
                p3_group=16, p3_lr=1e-3, p3_cot=64, p3_eval_every=8, data_path=None),
}


def _argv(**kw) -> list[str]:
    out = []
    for k, v in kw.items():  # True -> a bare flag; lists -> nargs values
        out += [f"--{k}"] if v is True else [f"--{k}", *([str(x) for x in v] if isinstance(v, list) else [str(v)])]
    return out


def _cached_step(path: Path, fn):
    """Run ``fn`` unless ``path`` (its JSON result) exists: the resumable unit of the runner."""
    if path.exists():
        return json.loads(path.read_text())
    res = fn()
    atomic_write_json(path, res)
    return res


def _p1(root: Path, name: str, s: dict, stage: str, device: str, **kw) -> dict:
    out = root / name
    argv = ["--stage", stage, "--num_samples", str(s["p1_samples"] if stage == "1a" else s["p1b_samples"]),
            "--max_seq_length", str(s["p1_len"]), "--no_wandb", "--output_dir", str(out), "--cache_dir",
            "cache/hidden", "--device", device] + _argv(**kw)
    if s["data_path"] and stage == "1a":
        argv += ["--data_path", s["data_path"]]

    def go():
        res = phase1.run(phase1.parse_config(argv))
        return {"argv": argv, "results": {str(d): {k: v for k, v in r.items() if k != "train"}
                                          for d, r in res.items()}}

    return _cached_step(root / f"step_{name}_{stage}.json", go)


def phase1_steps(s: dict, root: Path, device: str) -> dict:
    """Stage-1a sweep at the README defaults (SVD init) and with --init random; stage 1b from d_main."""
    runs = {"defaults": _p1(root, "phase1", s, "1a", device, sweep=True, sweep_d_values=s["d_values"])}
    if s["p1_random"]:
        runs["random_init"] = _p1(root, "phase1_random", s, "1a", device, sweep=True, sweep_d_values=s["d_values"],
                                  init="random")
    src = root / "phase1" / f"d{s['d_main']}"
    runs["stage1b"] = _p1(root / "phase1", f"d{s['d_main']}", s, "1b", device, d_compressed=s["d_main"],
                          stage1b_from=s.get("p1b_from", "stage1a"))
    return {"runs": runs, "stage1b_checkpoint": str(src / "stage1b_best.pt")}


def phase1_heldout(s: dict, root: Path, device: str) -> dict:
    """Per held-out sequence sums for every compressor row and the SVD/PCA references (for the table's
    cluster bootstrap): needs the cached hidden states, so it runs in the same process as the sweep."""
    from llm_trm.compression import apply_reference, svd_reference
    from llm_trm.llm import LazyLLM
    from llm_trm.report import sequence_sums
    from shared_utils.models import load_tokenizer

    cfg = phase1.parse_config(["--num_samples", str(s["p1_samples"]), "--max_seq_length", str(s["p1_len"]),
                               "--cache_dir", "cache/hidden", "--device", device]
                              + (["--data_path", s["data_path"]] if s["data_path"] else []))
    data, _ = phase1.prepare_data(cfg, load_tokenizer(cfg.model_name), LazyLLM(cfg.model_name, torch.device(device)))
    tr, he = data["train"], data["heldout"]
    rows_tr = tr["hidden"][tr["mask"].bool()]
    refs = {name: svd_reference(rows_tr, s["d_values"], centered=c) for name, c in (("svd", False), ("pca", True))}
    x, mask = he["hidden"].float(), he["mask"]
    out = {}
    for d in s["d_values"]:
        for name, folder in (("defaults", "phase1"), ("random_init", "phase1_random")):
            ck = root / folder / f"d{d}" / "stage1a_best.pt"
            if ck.exists():
                comp = phase1.load_compressor(ck)
                with torch.no_grad():
                    out[f"{name} D'={d}"] = sequence_sums(x, comp.reconstruct(x), mask)
        for name, ref in refs.items():
            out[f"{name} D'={d}"] = sequence_sums(x, apply_reference(x, ref[d]), mask)
    return {"sums": out, "n_train_tokens": int(tr["mask"].sum()), "n_heldout_tokens": int(mask.sum()),
            "n_heldout_sequences": int(len(mask)), "d_model": int(x.shape[-1])}


def phase2_steps(s: dict, root: Path, comp_ckpt: str, device: str) -> dict:
    dg = ["--num_samples", str(s["p2_samples"]), "--heldout_fraction", "0.2", "--max_value", "99",
          "--output_dir", str(root / "pairs"), "--device", device, "--batch_size", "16"]
    if not (root / "pairs/hidden_pairs.pt").exists():
        phase2_datagen.run(phase2_datagen.parse_config(dg))
    tr = ["--data_path", str(root / "pairs/hidden_pairs.pt"), "--compressor_checkpoint", comp_ckpt,
          "--output_dir", str(root / "phase2"), "--num_epochs", str(s["p2_epochs"]), "--batch_size",
          str(s["p2_batch"]), "--n_supervision_steps", str(s["p2_nsup"]), "--n_latent_steps", str(s["p2_n"]),
          "--n_deep_recursions", str(s["p2_T"]), "--learning_rate", str(s["p2_lr"]), "--n_heads", str(s["p2_heads"]),
          "--dropout", "0.0", "--resume", "--refit_compressor", s.get("p2_refit", "none")]
    if not (root / "phase2/eval.json").exists():
        phase2.run(phase2.parse_config(tr))
    return {"datagen_command": dg, "train_command": tr, "dir": str(root / "phase2")}


def phase3_steps(s: dict, root: Path, comp_ckpt: str, device: str) -> dict:
    argv = ["--trm_checkpoint", str(root / "phase2/best.pt"), "--compressor_checkpoint", comp_ckpt,
            "--output_dir", str(root / "phase3"), "--num_train", str(s["p3_train"]), "--num_eval", str(s["p3_eval"]),
            "--heldout_pool", str(s["p3_pool"]), "--num_epochs", str(s["p3_epochs"]), "--batch_size",
            str(s["p3_batch"]), "--learning_rate", str(s["p3_lr"]), "--cot_max_new_tokens", str(s["p3_cot"]),
            "--group_size", str(s["p3_group"]), "--eval_every", str(s["p3_eval_every"]), "--device", device]
    if not (root / "phase3/eval.json").exists():
        phase3.run(phase3.parse_config(argv))
    return {"command": argv, "dir": str(root / "phase3")}


def run(preset: str, data_path: str | None = None, results_dir: str = "results", threads: int | None = None,
        device: str = "cpu") -> dict:
    if threads:
        torch.set_num_threads(threads)  # 1 helps a lot when the cores are shared with other jobs
    s = dict(PRESETS[preset])
    if data_path:
        s["data_path"] = data_path
    root = Path(s["out"])
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    p1 = phase1_steps(s, root, device)
    held = _cached_step(root / "step_phase1_heldout.json", lambda: phase1_heldout(s, root, device))
    p2 = phase2_steps(s, root, p1["stage1b_checkpoint"], device)
    p2_comp = root / "phase2" / "compressor.pt"  # phase 3 uses the compressor phase 2 was trained with
    p3 = phase3_steps(s, root, str(p2_comp) if p2_comp.exists() else p1["stage1b_checkpoint"], device)
    from llm_trm.report import write_tables

    command = (f"python -m llm_trm.pipeline --preset {preset} --threads {torch.get_num_threads()}"
               + (f" --data_path {s['data_path']}" if s["data_path"] else ""))
    # smoke tables stay under runs/ (tiny scale, never committed); the real presets write results/
    out_dir = root / "results" if preset == "smoke" else Path(results_dir)
    write_tables(preset, s, p1, held, p2, p3, out_dir, command, time.time() - t0)
    if preset == "smoke":
        res = p1["runs"]["defaults"]["results"][str(s["d_main"])]["heldout"]
        atomic_write_json(root / "summary.json", {
            "what": f"llm_trm: phase 1 (D'={s['d_main']}) -> phase-2 TRM -> phase-3 GRPO on SmolLM2-135M, CPU",
            "metric": f"held-out cosine of the D'={s['d_main']} compressor",
            "value": round(res["cosine_similarity"], 4)})
    return {"phase1": p1, "phase2": p2, "phase3": p3}


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(prog="llm_trm.pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    p.add_argument("--data_path", default=None)
    p.add_argument("--results_dir", default="results")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (the gpu preset)")
    a = p.parse_args(argv)
    if a.threads is not None and a.threads < 1:
        from shared_utils.errors import UserError

        raise UserError(f"--threads {a.threads} must be >= 1")
    from llm_trm.checks import check_data_path

    check_data_path(a.data_path)
    run(a.preset, a.data_path, a.results_dir, a.threads, a.device)


if __name__ == "__main__":
    main()
