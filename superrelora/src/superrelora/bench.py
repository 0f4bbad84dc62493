"""Benchmark: SuperReLoRA vs plain peft LoRA on the same model and batches (each variant in a fresh subprocess).

Prints per-step time of each and their ratio (goal <= 1.05x), merge time as a share of training time (goal < 2 %),
at the benchmark's merge_every and extrapolated to the README's merge_every = 500, and peak RSS of each.

    python scripts/benchmark.py [--model smollm2-135m] [--steps 8] [--merge_every 2] [--repeats 2]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch


def run_variant(variant: str, model_name: str, steps: int, merge_every: int, batch: int, length: int) -> dict:
    """Train ``steps`` updates of LoRA (``variant="lora"``) or SuperReLoRA on fixed random tokens; time each part."""
    from superrelora.config import load_config
    from superrelora.merge import MergeHook
    from superrelora.model import build_model, load_base_model
    from superrelora.train import build_optimizer, build_scheduler

    torch.manual_seed(0)
    cfg = load_config(None, {"model_name": model_name, "method": "superrelora" if variant == "superrelora" else "lora",
                             "merge_every": merge_every})
    model = build_model(cfg, load_base_model(model_name)).train()
    vocab = model.config.vocab_size
    opt, hook = build_optimizer(model, cfg), MergeHook(mode=cfg.method if variant == "superrelora" else "none",
                                                       every=merge_every, alpha=0.1)
    sched = build_scheduler(opt, cfg, steps)
    g = torch.Generator().manual_seed(1)
    data = [torch.randint(3, vocab, (batch, length), generator=g) for _ in range(steps)]
    step_t, merge_t = [], 0.0
    for i, ids in enumerate(data):
        t0 = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
        model.zero_grad()
        t1 = time.perf_counter()
        step_t.append(t1 - t0)  # the update itself (forward, backward, AdamW): merges are timed separately
        if hook.on_update(i + 1, model, opt):
            merge_t += time.perf_counter() - t1
    steady = step_t[1:]
    return {"variant": variant, "step_s": sum(steady) / len(steady), "merge_s_total": merge_t,
            "merges": len(hook.events), "train_s_total": sum(step_t) + merge_t,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def compare(model_name: str, steps: int, merge_every: int, batch: int, length: int, repeats: int) -> dict:
    results: dict[str, list] = {"lora": [], "superrelora": []}
    for _ in range(repeats):  # interleave A/B to spread machine-load drift over both
        for variant in ("lora", "superrelora"):
            cmd = [sys.executable, "-m", "superrelora.bench", "--variant", variant, "--model", model_name,
                   "--steps", str(steps), "--merge_every", str(merge_every), "--batch", str(batch),
                   "--length", str(length)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results[variant].append(json.loads(out))
    best = {v: min(r, key=lambda x: x["step_s"]) for v, r in results.items()}
    sr = best["superrelora"]
    merge_each = sr["merge_s_total"] / max(1, sr["merges"])
    return {
        "lora_step_s": best["lora"]["step_s"], "superrelora_step_s": sr["step_s"],
        "step_time_ratio": sr["step_s"] / best["lora"]["step_s"],
        "step_time_ratio_with_merges": (sr["step_s"] + merge_each / merge_every) / best["lora"]["step_s"],
        "merge_s_each": merge_each,
        "merge_share_in_run": sr["merge_s_total"] / sr["train_s_total"],
        "merge_share_at_merge_every_500": merge_each / (500 * best["lora"]["step_s"] + merge_each),
        "lora_peak_rss_mb": best["lora"]["peak_rss_mb"], "superrelora_peak_rss_mb": sr["peak_rss_mb"],
        "steps": steps, "merge_every": merge_every, "batch": f"{batch}x{length}", "repeats": repeats,
        "model": model_name,
    }


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=["lora", "superrelora"])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--merge_every", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.model, a.steps, a.merge_every, a.batch, a.length)))
        return None
    return compare(a.model, a.steps, a.merge_every, a.batch, a.length, a.repeats)


if __name__ == "__main__":
    main()
