"""One-command GPU check of superrelora: the real SmolLM2-135M in bf16 on CUDA, through the project's own code.

    python gpu_check.py --out results/gpu_check.json                 # needs CUDA (< 60 s on one H200)
    python gpu_check.py --out runs/gpu_check_dry.json --dry-run      # same code on CPU with a tiny random Llama

Items: ``train_step_bf16`` = two optimizer updates of SuperReLoRA through the manual loop (``train.train_manual``:
peft LoRA on all 7 projections, AdamW, clipping, schedule, and the partial merge after every update, so the
merge runs on the GPU too); the second update is timed (CUDA-synchronised, after the first as warm-up).
``eval`` = the project's evaluation (``evaluate.evaluate_text``, pads masked, per-token NLL) on held-out text.
MFU of the step = 6 * N * T (N = all parameters of the model, T = tokens in the update; attention scores not
counted; with a frozen base the backward skips weight gradients, so 4 * N * T is closer to the work done) /
seconds / (peak_tflops * 1e12). Writes one JSON (``items`` with ok / seconds / detail, ``mfu``) and exits 1 if an
item failed, 2 without CUDA (unless --dry-run).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Checks:
    def __init__(self):
        self.items: list[dict] = []

    def run(self, name: str, fn, device):
        """Run ``fn`` (returns (detail, value)); record ok / seconds / detail; failures are recorded, not raised."""
        t0 = time.perf_counter()
        try:
            detail, value = fn()
            _sync(device)
            self.items.append({"name": name, "ok": True, "seconds": round(time.perf_counter() - t0, 3),
                               "detail": detail})
            return value
        except Exception as exc:  # a failed item is data for the report, not a crash
            self.items.append({"name": name, "ok": False, "seconds": round(time.perf_counter() - t0, 3),
                               "detail": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)})
            return None


def setup_for(dry_run: bool, out_dir: Path, device):
    """A train.Setup on the real model (bf16, CUDA) or a tiny random Llama (CPU), embedded text, 2 updates."""
    import torch

    from shared_utils.runs import RunDir, seed_everything
    from superrelora.config import load_config
    from superrelora.data import PadCollator, load_text_rows, stream_blocks
    from superrelora.model import build_model
    from superrelora.train import Setup, get_tokenizer, make_hook

    over = {"method": "superrelora", "merge_every": 1, "merge_alpha": 0.1, "max_steps": 2, "logging_steps": 0,
            "output_dir": str(out_dir), "seed": 0, "learning_rate": 2e-4}
    if dry_run:
        over.update(model_name=str(ROOT / "configs" / "tiny_llama.json"), batch_size=4, max_length=64, lora_r=4,
                    lora_alpha=8)
    else:
        over.update(model_name="smollm2-135m", batch_size=16, max_length=256, bf16=True, device="cuda")
    cfg = load_config(None, over)
    tok = get_tokenizer(cfg)
    seed_everything(0)
    if dry_run:
        from superrelora.model import load_base_model

        base = load_base_model(cfg.model_name)
    else:
        from shared_utils.models import load_causal_lm

        base = load_causal_lm("smollm2-135m", dtype=torch.bfloat16)
    model = build_model(cfg, base).to(device)
    text = load_text_rows("embedded", "train")
    rows = stream_blocks(tok, text, cfg.max_length, limit_blocks=cfg.batch_size * 2)  # full-length real text
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    setup = Setup(cfg, model.train(), tok, rows, load_text_rows("embedded", "validation")[:32], 2,
                  torch.device(device), make_hook(cfg), PadCollator(pad), RunDir(out_dir))
    what = "tiny random Llama (configs/tiny_llama.json), fp32" if dry_run else \
        "SmolLM2-135M-Instruct (embedded), bf16 weights + bf16 autocast"
    return setup, what


def check(a) -> dict:
    import tempfile

    import torch

    from superrelora.evaluate import evaluate_text
    from superrelora.train import train_manual

    device = "cpu" if a.dry_run else "cuda"
    checks = Checks()
    tmp = Path(tempfile.mkdtemp(prefix="superrelora_gpu_check_"))
    got = checks.run("load_model", lambda: (None, setup_for(a.dry_run, tmp, device)), device)
    out = {"project": "superrelora", "device": torch.cuda.get_device_name(0) if not a.dry_run else "cpu (dry run)",
           "torch": torch.__version__, "cuda": torch.version.cuda, "items": checks.items}
    if got is None:
        return out
    setup, what = got
    out["model"] = what
    n_params = sum(p.numel() for p in setup.model.parameters())

    def train():
        res = train_manual(setup)  # update 1 = warm-up, update 2 timed (the loop synchronises CUDA per update)
        seconds = res["step_times"][1]
        tokens = setup.cfg.batch_size * setup.cfg.max_length
        merges = len([e for e in setup.hook.events if "merge_norm" in e])
        if merges != 2:
            raise RuntimeError(f"expected a partial merge after each of the 2 updates, got {merges}")
        loss = setup.history[-1]["loss"]
        if not loss == loss:
            raise RuntimeError("non-finite loss")
        return (f"SuperReLoRA update (peft LoRA r={setup.cfg.lora_r} on 7 projections, AdamW, merge a=0.1 after "
                f"each update), batch {setup.cfg.batch_size} x {setup.cfg.max_length}, loss {loss:.4f}, "
                f"{seconds:.4f} s (after 1 warm-up); FLOPs counted as 6*N*T, N={n_params}, T={tokens} "
                f"(4*N*T = frozen-base work would give {4 / 6:.3f} of the MFU shown)"), (6.0 * n_params * tokens,
                                                                                    seconds)
    mfu = checks.run("train_step_bf16", train, device)

    def evaluate():
        res = evaluate_text(setup.model, setup.tokenizer, setup.eval_text, 128, 16, stream=False)
        if not (res["loss"] == res["loss"]) or res["perplexity"] <= 1:
            raise ValueError(f"perplexity {res['perplexity']} is not a finite value > 1")
        return f"eval_text: {res['n_tokens']} tokens, loss {res['loss']:.4f}, perplexity {res['perplexity']:.2f}", res
    checks.run("eval", evaluate, device)
    peak = a.peak_tflops * 1e12
    if mfu is not None:
        flops, seconds = mfu
        out["mfu"] = {"flops": flops, "seconds": seconds, "peak_flops": peak, "value": flops / seconds / peak,
                      "peak_source": f"H200 bf16 dense {a.peak_tflops:g} TFLOP/s (NVIDIA spec)"
                      if a.peak_tflops == 989 else f"--peak_tflops {a.peak_tflops:g}"}
    return out


def main(argv=None) -> int:
    from shared_utils.errors import UserError, cli_main
    from shared_utils.runs import atomic_write_json, check_output_path

    @cli_main
    def run():
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--out", required=True, help="JSON file to write")
        p.add_argument("--dry-run", dest="dry_run", action="store_true", help="CPU, tiny random model")
        p.add_argument("--peak_tflops", type=float, default=989.0, help="peak bf16 TFLOP/s of the GPU")
        a = p.parse_args(argv)
        if a.peak_tflops <= 0:
            raise UserError(f"--peak_tflops must be > 0, got {a.peak_tflops}")
        check_output_path(a.out, "--out", kind="file")
        import torch

        if not a.dry_run and not torch.cuda.is_available():
            raise UserError("gpu_check.py needs a CUDA GPU (use --dry-run to run the same code on CPU)")
        out = check(a)
        atomic_write_json(a.out, out)
        bad = [i["name"] for i in out["items"] if not i["ok"]]
        print(f"[gpu_check] superrelora: {len(out['items']) - len(bad)}/{len(out['items'])} items ok"
              + (f", MFU {out['mfu']['value']:.4f}" if "mfu" in out else "") + f" -> {a.out}")
        return 1 if bad else 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
