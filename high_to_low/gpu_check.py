"""One-command GPU check of high_to_low: one bf16 TurboConn training step and one evaluation on the real model.

    python gpu_check.py --out results/gpu_check.json [--peak_tflops 989]
    python gpu_check.py --out /tmp/gpu_check.json --dry-run        # same code on CPU with the tiny model

Without --dry-run it needs CUDA: it loads the embedded SmolLM2-135M-Instruct in bf16 on the GPU with LoRA
(r = 120) + the 36 preset bridges at g = 4, runs one warm-up and one timed training step through
``high_to_low.training.train_step`` (the code of train.py) on 16 multi-step-arithmetic examples, and one
evaluation (teacher-forced answer probability + cached greedy generation) through
``high_to_low.evaluate.evaluate_items`` (the code of evaluation.py). MFU = 6 * (all model parameters, embeddings
counted once) * (tokens in the padded batch) / (CUDA-synchronised seconds of the timed step) / peak; attention
FLOPs are not counted. Writes the JSON and exits 1 if any item failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from high_to_low.evaluate import evaluate_items
from high_to_low.get_model import build_model, preset_bridges, select_trainable
from high_to_low.reasoning_datasets import load_split
from high_to_low.training import make_batch, train_step
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json, check_output_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GPU check: one bf16 training step + one evaluation, with MFU.")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--dry-run", action="store_true", help="run the same code on CPU with the tiny model")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H200: 989)")
    p.add_argument("--batch_size", type=int, default=16)
    return p


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_check(args) -> dict:
    device = torch.device("cpu" if args.dry_run else "cuda")
    model_name = "tiny" if args.dry_run else "smollm2-135m"
    layers = 6 if args.dry_run else 30
    cfg = {"our_method": True, "model_name": model_name, "dataset_name": "multi-step-arithmetic",
           "bridges": preset_bridges(model_name, layers), "bridge_rank": 32 if args.dry_run else 120,
           "lora_rank": 32 if args.dry_run else 120, "multiplier": 100, "group_size": 4,
           "full_finetune": args.dry_run, "seed": 0, "batch_size": args.batch_size, "split_batch_into": 1,
           "tiny_layers": 6}
    items = load_split("multi-step-arithmetic", "train", num=args.batch_size, seed=0, max_n=8)
    out = {"project": "high_to_low", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "dtype": "bfloat16", "items": []}
    t0 = time.perf_counter()
    model, tok = build_model(cfg)
    model.tokenizer = tok
    params = select_trainable(model, cfg["full_finetune"])
    model.to(device=device, dtype=torch.bfloat16)
    optimizer = torch.optim.Adam(params, lr=1e-5)
    load_s = time.perf_counter() - t0

    item = {"name": "train_step_bf16", "ok": False}
    try:
        model.train()
        train_step(model, items, cfg, params, optimizer, None, device)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        stats = train_step(model, items, cfg, params, optimizer, None, device)
        _sync(device)
        seconds = time.perf_counter() - t0
        ids, _, _ = make_batch(items, tok, cfg["group_size"])
        n_params = sum(p.numel() for p in model.parameters())
        flops = 6.0 * n_params * ids.numel()
        ok = bool(torch.isfinite(torch.tensor(stats["loss"])))
        item.update(ok=ok, seconds=seconds, detail=f"{len(items)} examples x {ids.shape[1]} tokens, g=4, "
                    f"{len(cfg['bridges'])} bridges, loss {stats['loss']:.4f}, model load {load_s:.1f} s")
        peak = args.peak_tflops * 1e12
        out["mfu"] = {"flops": flops, "seconds": seconds, "peak_flops": peak, "value": flops / seconds / peak,
                      "flops_formula": "6 * all parameters * padded batch tokens (no attention FLOPs)",
                      "peak_source": f"--peak_tflops {args.peak_tflops:g} (H200 bf16 dense 989 TFLOP/s, NVIDIA spec)"}
    except Exception as exc:  # noqa: BLE001 - a failed item is reported in the JSON, not as a traceback
        item.update(detail=f"{type(exc).__name__}: {exc}")
    out["items"].append(item)

    item = {"name": "eval", "ok": False}
    try:
        model.eval()
        _sync(device)
        t0 = time.perf_counter()
        res = evaluate_items(model, tok, items[:8], "multi-step-arithmetic", 8, device, generate=True)
        _sync(device)
        ok = 0.0 <= res["mean_prob"] <= 1.0 and "greedy_em" in res
        item.update(ok=bool(ok), seconds=time.perf_counter() - t0,
                    detail=f"8 examples: mean answer prob {res['mean_prob']:.4f}, greedy EM {res['greedy_em']:.3f}")
    except Exception as exc:  # noqa: BLE001
        item.update(detail=f"{type(exc).__name__}: {exc}")
    out["items"].append(item)
    return out


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_output_path(args.out, "--out", kind="file")
    if args.batch_size <= 0 or args.peak_tflops <= 0:
        raise UserError("--batch_size and --peak_tflops must be > 0")
    if not args.dry_run and not torch.cuda.is_available():
        raise UserError("gpu_check.py needs a CUDA GPU (use --dry-run to run the same code on CPU)")
    if args.dry_run:
        torch.set_num_threads(1)
    out = run_check(args)
    atomic_write_json(args.out, out)
    print(json.dumps(out, indent=2))
    return 0 if all(i["ok"] for i in out["items"]) else 1


if __name__ == "__main__":
    sys.exit(main())
