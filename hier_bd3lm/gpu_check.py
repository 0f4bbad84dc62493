"""One-command GPU check of hier_bd3lm: the real model and the project's own train / eval code on CUDA in bf16.

python gpu_check.py --out results/gpu_check.json [--peak_tflops 989]       # needs CUDA; < 60 s on one H200
python gpu_check.py --out /tmp/gpu_check.json --dry-run                   # the same code on CPU, tiny model

Items (each ok / failed with seconds and a detail line; exit 1 if any failed):
- plan_generation_bf16: the embedded real SmolLM2-135M-Instruct loaded in bf16 on the GPU writes abstract plans for
  4 GSM8K problems through the project's `hf` plan backend (dry run: the rule backend, no model).
- train_step_bf16: one BD3-LM training step (hier_bd3lm.train.train_step: the 2L vectorised NELBO, AdamW, EMA)
  under bf16 autocast, model `small` (bd3lms small: hidden 768, 12 blocks), Hier layout 128/128/256, L' = 16,
  batch 32, SmolLM2 tokenizer compacted to the fixture texts; timed after one warm-up step, CUDA-synchronised.
- eval: the project's evaluate_nll (NELBO per token) and KV-cached sample_eval on 2 problems.
MFU of the training step = 6 x non-embedding parameters x processed tokens (batch x (Q + 2(P + E)), the 2L input;
attention FLOPs not counted) / seconds / (peak_tflops x 1e12).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from hier_bd3lm.guards import check_output_path
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json

PROJECT = Path(__file__).resolve().parent
FIX = PROJECT / "tests" / "fixtures"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, char tokenizer, rule plans")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H200: 989)")
    a = p.parse_args(argv)
    if a.peak_tflops <= 0:
        raise UserError(f"--peak_tflops must be > 0, got {a.peak_tflops}")
    if check_output_path(a.out, "--out").is_dir():
        raise UserError(f"--out {a.out} is a directory, not a file")
    return a


def _item(name, fn):
    t0 = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # a failed item is recorded, the check goes on
        detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", False
    return {"name": name, "ok": ok, "seconds": round(time.perf_counter() - t0, 3), "detail": detail}


def run_check(a) -> dict:
    import torch

    from hier_bd3lm.config import parse_overrides
    from hier_bd3lm.ema import EMA
    from hier_bd3lm.evaluate import evaluate_nll, sample_eval
    from hier_bd3lm.pipeline import build_model, encode, record_texts
    from hier_bd3lm.plans import make_backend
    from hier_bd3lm.records import read_records
    from hier_bd3lm.tokenizer import fit_tokenizer
    from hier_bd3lm.train import train_step
    from shared_utils.data import load_gsm8k

    dry = a.dry_run
    dev = "cpu" if dry else "cuda"
    dtype = None if dry else torch.bfloat16
    out = {"project": "hier_bd3lm", "device": "cpu (dry run)" if dry else torch.cuda.get_device_name(0),
           "torch": torch.__version__, "cuda": torch.version.cuda, "items": []}
    rows = load_gsm8k("test", FIX / "gsm8k_test.jsonl", 4)

    def plans():
        b = (make_backend("rule", "", 0, 1, 0, "readme") if dry else
             make_backend("hf", "smollm2-135m", 0.0, 1.0, 64, "readme", 1, 0))
        if not dry:  # the hf backend loads fp32 on CPU by default: reload in bf16 on the GPU
            from hier_bd3lm.plans import HFBackend

            b = HFBackend("smollm2-135m", 0.0, 1.0, 64, "readme", 0, dtype=torch.bfloat16, device="cuda")
        p = b.generate(rows)
        assert len(p) == 4 and all(isinstance(x, str) and x for x in p)
        return f"{len(p)} plans, first: {p[0][:80]!r}"

    out["items"].append(_item("plan_generation_bf16", plans))
    size = (["model=micro", "data.tokenizer=char", "training.hierarchical.question_len=32",
             "training.hierarchical.plan_len=32", "training.hierarchical.exec_len=64",
             "training.hierarchical.total_len=128", "block_size=8"] if dry else
            ["model=small", "data.tokenizer=smollm2-135m", "training.hierarchical.question_len=128",
             "training.hierarchical.plan_len=128", "training.hierarchical.exec_len=256",
             "training.hierarchical.total_len=512", "block_size=16"])
    cfg = parse_overrides(size + [f"data.train_path={FIX / 'hier_gsm8k_train.json'}", f"trainer.device={dev}"])
    recs = read_records(FIX / "hier_gsm8k_train.json")
    tok = fit_tokenizer(cfg.data.tokenizer, record_texts(recs))
    enc = encode(cfg, recs, tok)
    batch = 4 if dry else 32
    idx = torch.arange(batch) % len(enc)
    x0, lm = enc.input_ids[idx].to(dev), enc.loss_mask[idx].to(dev)
    model = build_model(cfg, tok.vocab_size, tok.mask_id).to(dev)
    opt = torch.optim.AdamW(model.backbone.parameters(), lr=1e-4)
    ema = EMA(model.backbone.parameters(), 0.999)
    g = torch.Generator(device=dev).manual_seed(0)
    timing = {}

    def step():
        from shared_utils.bench import time_once

        train_step(model, opt, None, ema, [(x0, lm)], g, autocast_dtype=dtype)  # warm-up
        loss = []
        timing["s"] = time_once(lambda: loss.append(train_step(model, opt, None, ema, [(x0, lm)], g,
                                                                autocast_dtype=dtype)[0]))
        assert loss[0] == loss[0], "NaN loss"
        return (f"loss {loss[0]:.3f}, {timing['s']:.4f} s/step, batch {batch} x {x0.shape[1]} tokens "
                f"({cfg.training.hierarchical.question_len + 2 * model.layout.gen_len} in the 2L input)")

    out["items"].append(_item("train_step_bf16", step))

    def evaluation():
        with torch.autocast(dev, dtype=dtype, enabled=dtype is not None):
            nll = evaluate_nll(model, enc, 4, mc_samples=1, device=dev, limit_batches=1)
            s = sample_eval(model, enc, tok, 2, 1, 0.9, True, device=dev)
        return f"NELBO/content token {nll['nll_per_content_token']:.3f}; sampled {s['n']} problems, {s['nfe_per_sample']:.0f} NFEs"

    out["items"].append(_item("eval", evaluation))
    lay_tokens = cfg.training.hierarchical.question_len + 2 * (model.layout.gen_len)
    params = sum(p.numel() for n, p in model.backbone.named_parameters() if "embed" not in n)
    flops = 6 * params * batch * lay_tokens
    secs = timing.get("s")
    peak = a.peak_tflops * 1e12
    out["mfu"] = {"flops": flops, "seconds": secs, "peak_flops": peak, "value": flops / secs / peak if secs else None,
                  "flops_formula": "6 x non-embedding params x batch x (Q + 2(P+E)); attention not counted",
                  "peak_source": "H200 bf16 dense 989 TFLOP/s (NVIDIA spec)" if a.peak_tflops == 989.0
                  else f"--peak_tflops {a.peak_tflops}"}
    return out


@cli_main
def main(argv=None):
    a = parse_args(argv)
    import torch

    if not a.dry_run and not torch.cuda.is_available():
        raise UserError("gpu_check.py needs a CUDA GPU (none found); use --dry-run to run the same code on CPU")
    torch.set_num_threads(1)
    res = run_check(a)
    atomic_write_json(a.out, res)
    print(json.dumps({k: v for k, v in res.items()}, indent=1))
    if not all(i["ok"] for i in res["items"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
