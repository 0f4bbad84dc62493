"""One-command GPU check of llm_trm: the real SmolLM2-135M in bf16 on CUDA, one phase-2 TRM training step (the
method's trainable part: supervision step of llm_trm.phase2 on compressed hidden states the LLM just produced
through llm_trm.phase2_datagen) and one evaluation (llm_trm.phase2_eval metrics + answer tokens), with MFU.

    python gpu_check.py --out results/gpu_check.json               # needs CUDA (< 60 s on one H200)
    python gpu_check.py --out /tmp/gpu_check.json --dry-run        # same code on CPU with a tiny model

MFU of the training step = model FLOPs / seconds / peak. FLOPs counted for the TRM only (the LLM is frozen and
runs before the step): every net call is 2 * P_net * tokens forward; the n+1 calls of the last recursion also
run backward (x3 in all), the (T-1)(n+1) earlier calls are forward only; attention's L^2 term is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_check(dry_run: bool, peak_tflops: float) -> dict:
    import torch

    from llm_trm.compression import DimensionCompressor
    from llm_trm.data import addition_split, assistant_turn, template_prefix, thinking_text
    from llm_trm.hidden import PrefixCache, shared_prefix_ids
    from llm_trm.phase2 import Phase2Config, answer_tokens, build_trm, pad_collate, supervision_step
    from llm_trm.phase2_datagen import pairs_for_texts
    from llm_trm.phase2_eval import per_example, point_metrics

    if dry_run:
        from llm_trm.tiny import TINY_LLAMA_OVERRIDES, tiny_tokenizer
        from shared_utils.models import tiny_llama

        device, tok = torch.device("cpu"), tiny_tokenizer()
        llm = tiny_llama(seed=0, max_position_embeddings=1024, **TINY_LLAMA_OVERRIDES).eval()
        d_c, n_pairs, name = 8, 16, "cpu (dry run, tiny model)"
    else:
        from shared_utils.models import load_causal_lm, load_tokenizer

        device, tok = torch.device("cuda"), load_tokenizer("smollm2-135m")
        llm = load_causal_lm("smollm2-135m", dtype=torch.bfloat16, device=device).eval()
        d_c, n_pairs, name = 96, 256, torch.cuda.get_device_name()
    items, t_all = [], time.time()
    problems, _ = addition_split(n_pairs, 8, 99, seed=0)
    texts = [thinking_text(tok, p) for p in problems]
    prefix = PrefixCache(llm, shared_prefix_ids(tok, [t for t, _ in texts[:8]], template_prefix(tok)))
    t0 = time.time()
    with torch.no_grad():
        pairs = []
        for s in range(0, n_pairs, 64):
            chunk, probs = texts[s: s + 64], problems[s: s + 64]
            ans = [c + len(assistant_turn(p)) - len(str(p.answer)) for (_, c), p in zip(chunk, probs)]
            pairs += pairs_for_texts(llm, tok, [t for t, _ in chunk], [c for _, c in chunk], 512, "answer", prefix,
                                     ans)
    _sync(device)
    pairs = [p for p in pairs if p is not None]
    items.append({"name": "hidden_states_bf16", "ok": len(pairs) > 0,
                  "seconds": round(time.time() - t0, 3), "detail": f"{len(pairs)} teacher-forced pairs"})
    comp = DimensionCompressor(pairs[0]["hidden_post"].shape[-1], d_c).to(device)
    xs = [comp(p["hidden_pre"].to(device).float()).detach() for p in pairs]
    ys = torch.stack([comp(p["hidden_post"].to(device).float()).detach() for p in pairs])
    cfg = Phase2Config(n_heads=8 if not dry_run else 2, batch_size=len(xs), dropout=0.0)
    trm = build_trm(cfg, d_c).to(device)
    trm.set_statistics(xs, ys)
    opt = torch.optim.AdamW(trm.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, mask = pad_collate([x.cpu() for x in xs])
    x, mask, target = x.to(device), mask.to(device), trm.standardize(ys)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)

    def step():
        with amp:
            x_aug, pad, y, z = trm.prepare(x, mask)
            return supervision_step(trm, opt, sched, None, x_aug, pad, y, z, target, cfg, 0.7)[2]

    step()  # warm-up
    _sync(device)
    t0 = time.time()
    m = step()
    _sync(device)
    sec = time.time() - t0
    p_net = sum(p.numel() for p in trm.net.parameters())
    tokens = int(mask.sum()) + len(xs)
    calls_grad, calls_fwd = cfg.n_latent_steps + 1, (cfg.n_deep_recursions - 1) * (cfg.n_latent_steps + 1)
    flops = 2 * p_net * tokens * (3 * calls_grad + calls_fwd)
    items.append({"name": "train_step_bf16", "ok": bool(m["loss"] == m["loss"]),
                  "seconds": round(sec, 4), "detail": f"phase-2 supervision step, batch {len(xs)}, loss {m['loss']:.4f}"})
    t0 = time.time()
    with torch.no_grad(), amp:
        pred = trm.predict(x, mask, cfg.n_supervision_steps).float()
    head = llm.get_output_embeddings().weight.detach().float()
    ans = torch.tensor([p["answer_token_id"] for p in pairs], device=device)
    ok = (answer_tokens(pred, comp, head) == ans).cpu()
    rep = point_metrics(per_example(pred.cpu(), ys.cpu(), ys.mean(0).cpu(), ok))
    _sync(device)
    items.append({"name": "eval", "ok": all(v == v for v in rep.values()), "seconds": round(time.time() - t0, 3),
                  "detail": json.dumps({k: round(v, 4) for k, v in rep.items()})})
    peak = peak_tflops * 1e12
    return {"project": "llm_trm", "device": name, "items": items, "wall_s": round(time.time() - t_all, 1),
            "mfu": {"flops": flops, "seconds": sec, "peak_flops": peak, "value": flops / sec / peak,
                    "peak_source": f"H200 bf16 dense {peak_tflops:g} TFLOP/s (NVIDIA spec)",
                    "flops_counted": "TRM only: 2*P_net*tokens per net call, x3 for the n+1 calls with grad"}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--peak_tflops", type=float, default=989.0)
    a = p.parse_args(argv)
    if a.peak_tflops <= 0:
        print(f"error: --peak_tflops {a.peak_tflops} must be positive", file=sys.stderr)
        return 2
    import torch

    if not a.dry_run and not torch.cuda.is_available():
        print("error: gpu_check.py needs a CUDA GPU (use --dry-run to run the same code on CPU)", file=sys.stderr)
        return 2
    res = run_check(a.dry_run, a.peak_tflops)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({i["name"]: i["ok"] for i in res["items"]}), f"mfu={res['mfu']['value']:.2e}")
    return 0 if all(i["ok"] for i in res["items"]) else 1


if __name__ == "__main__":
    sys.exit(main())
