"""One-command GPU check of llm_streamline: the real SmolLM2-135M in bf16 on CUDA, through the project's own code.

    python gpu_check.py --out results/gpu_check.json                 # needs CUDA (< 60 s on one H200)
    python gpu_check.py --out runs/gpu_check_dry.json --dry-run      # same code on CPU with a tiny random Llama

Items: block selection (cosine scores, ``selection.score_blocks``), one LLM-loss training step of the pruned
model (``llm_train.llm_micro_step`` + AdamW, only the lightweight layer trainable), one MSE-loss step of the
lightweight layer (``mse_train.mse_micro_step``) and one evaluation (``evaluate.perplexity``). MFU of the
LLM-loss step = model FLOPs (``flops.llm_step_flops``: forward of the pruned model incl. attention scores and
lm_head, input gradients through the layers above the trained one and the lm_head, input + weight gradients of
the trained layer) / seconds of one step after one warm-up step (CUDA-synchronised) / peak. Writes one JSON
(``items`` with ok / seconds / detail, ``mfu``) and exits 1 if any item failed. The project's accelerate +
DeepSpeed ZeRO-2 config is listed as ``accelerate_config`` (launching it needs ``pip install deepspeed``).
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

import torch

from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json

ACCELERATE_CONFIG = "4gpu.yaml"


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


class Checks:
    def __init__(self):
        self.items: list[dict] = []

    def run(self, name: str, fn, device):
        """Run ``fn`` (returns (detail, value)); record ok / seconds / detail; failures are recorded, not raised."""
        t0 = time.perf_counter()
        try:
            detail, value = fn()
            _sync(device)
            self.items.append({"name": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3), "detail": detail})
            return value
        except Exception as exc:  # a failed item is data for the report, not a crash
            self.items.append({"name": name, "ok": False, "seconds": round(time.perf_counter() - t0, 3),
                               "detail": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc(limit=6)})
            return None


def load(dry_run: bool, device):
    from shared_utils.models import load_causal_lm, tiny_llama

    if dry_run:
        model = tiny_llama(seed=0, num_hidden_layers=12, vocab_size=512, max_position_embeddings=1024).eval()
        return model, torch.randint(0, 512, (8, 128), generator=torch.Generator().manual_seed(0)), "tiny random Llama"
    from llm_streamline.evaluate import ppl_blocks
    from shared_utils.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    model = load_causal_lm("smollm2-135m", dtype=torch.bfloat16, device=device).eval()
    blocks = ppl_blocks(tok, "embedded", 512, 16)  # real text (stdlib docstrings), [16, 512]
    return model, blocks, "SmolLM2-135M-Instruct (embedded), bf16"


def check(a) -> dict:
    from llm_streamline import data as D
    from llm_streamline import flops as F
    from llm_streamline.adapters import get_adapter
    from llm_streamline.evaluate import perplexity
    from llm_streamline.lightweight import build_lightweight, trainable_parameters
    from llm_streamline.llm_train import freeze_all_but, lightweight_slots, llm_micro_step
    from llm_streamline.mse_train import mse_micro_step
    from llm_streamline.pipeline import assemble
    from llm_streamline.selection import score_blocks

    device = "cpu" if a.dry_run else "cuda"
    torch.manual_seed(0)
    checks = Checks()
    model, blocks, what = checks.run("load_model", lambda: (None, load(a.dry_run, device)), device) or (None, None, "")
    out = {"project": "llm_streamline", "device": torch.cuda.get_device_name(0) if not a.dry_run else "cpu (dry run)",
           "model": what, "torch": torch.__version__, "cuda": torch.version.cuda, "accelerate_config": ACCELERATE_CONFIG,
           "items": checks.items}
    if model is None:
        return out
    blocks = blocks.to(device)
    n = a.layer_intervals
    batch = blocks[: a.batch_size]

    def select():
        sel = score_blocks(model, [b for b in D.batches(blocks[:4], 2)], n)
        return f"best block {sel['best_layer']}..{sel['best_layer'] + n}, {len(sel['scores'])} candidates", sel
    sel = checks.run("select_block", select, device)
    best = sel["best_layer"] if sel else 0
    modules = build_lightweight(model, "layer", best, 1)
    pruned = assemble(model, best, n, "layer", modules).to(device)
    trainable = trainable_parameters(lightweight_slots(pruned, best, 1), "layer", get_adapter(pruned))
    freeze_all_but(pruned, trainable)
    opt = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.95))
    dtype = next(model.parameters()).dtype

    def llm_step():
        pruned.train()
        llm_micro_step(pruned, batch, backward=lambda loss: loss.backward())
        opt.step()
        opt.zero_grad(set_to_none=True)

    def train_llm():
        timed(llm_step, device)  # warm-up
        seconds = timed(llm_step, device)
        flops = F.llm_step_flops(pruned, best, batch.shape[0], batch.shape[1])
        return (f"LLM-loss step, {pruned.config.num_hidden_layers} layers, batch {tuple(batch.shape)}, {dtype}, "
                f"{seconds:.4f} s (after 1 warm-up)"), (flops, seconds)
    mfu = checks.run("train_step_bf16", train_llm, device)

    def train_mse():
        mods = build_lightweight(model, "layer", best, 1).to(device)
        params = trainable_parameters(mods, "layer", get_adapter(model))
        for p in params:
            p.requires_grad_(True)
        o = torch.optim.AdamW(params, lr=1e-5)
        x = torch.randn(*batch.shape, model.config.hidden_size, device=device, dtype=dtype)
        mask = torch.ones(batch.shape, dtype=torch.long, device=device)

        def step():
            mse_micro_step(model, mods, "layer", x, x, mask, 0, 1)
            o.step()
            o.zero_grad(set_to_none=True)
        timed(step, device)
        return f"MSE-loss step of one layer, {tuple(x.shape)}, {timed(step, device):.4f} s", None
    checks.run("train_step_mse_bf16", train_mse, device)

    def evaluate():
        pruned.eval()
        ppl = perplexity(pruned, blocks, batch_size=8, device=device)
        if not ppl == ppl or ppl <= 1:
            raise ValueError(f"perplexity {ppl} is not a finite value > 1")
        return f"perplexity of the pruned model on {blocks.numel()} tokens: {ppl:.2f}", ppl
    checks.run("eval", evaluate, device)
    if mfu:
        flops, seconds = mfu
        peak = a.peak_tflops * 1e12
        out["mfu"] = {"flops": flops, "seconds": seconds, "peak_flops": peak, "value": flops / seconds / peak,
                      "peak_source": f"{a.peak_source} {a.peak_tflops:g} TFLOP/s",
                      "flops_counted": "llm_streamline.flops.llm_step_flops (matmul + attention scores; backward "
                                       "only where gradients are needed: one trainable layer)"}
    return out


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="CPU, tiny random model (tests)")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H200: 989)")
    p.add_argument("--peak_source", default="H200 bf16 dense (NVIDIA spec)")
    p.add_argument("--layer_intervals", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=8)
    a = p.parse_args(argv)
    if a.peak_tflops <= 0 or a.layer_intervals < 1 or a.batch_size < 1:
        raise UserError("--peak_tflops, --layer_intervals and --batch_size must be positive")
    if Path(a.out).is_dir():
        raise UserError(f"--out {a.out} is a directory; give a .json file")
    if not a.dry_run and not torch.cuda.is_available():
        raise UserError("gpu_check.py needs CUDA (no GPU visible); use --dry-run for the CPU dry run")
    out = check(a)
    atomic_write_json(a.out, out)
    for item in out["items"]:
        print(f"[gpu_check] {item['name']}: {'ok' if item['ok'] else 'FAILED'} ({item['seconds']} s) {item['detail']}")
    if "mfu" in out:
        print(f"[gpu_check] MFU {out['mfu']['value']:.4f} ({out['mfu']['flops'] / 1e9:.1f} GFLOP in "
              f"{out['mfu']['seconds']:.4f} s)")
    if not all(i["ok"] for i in out["items"]) or "mfu" not in out:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
