"""Benchmark, one run, ratios against baselines measured in the same run (results/bench.md + .json):

1. phase-1 trained cosine / truncated-SVD-optimum cosine per D' (goal >= 0.995), held-out tokens;
2. hidden-state caching (base model, last layer only) tokens/s vs the original's plain forward pass
   (full LM with logits and ``output_hidden_states=True``), and one cached epoch vs one online epoch;
3. phase-2 SequenceTRM throughput (training supervision steps/s and inference samples/s).

    python -m llm_trm.bench                       # embedded SmolLM2 + embedded corpus, CPU
    python -m llm_trm.bench --num_samples 128 --max_seq_length 128 --steps 3000
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from llm_trm.compression import DimensionCompressor, apply_reference, compute_metrics, masked_mse, svd_reference
from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json, atomic_write_text, seed_everything


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def caching_speed(model, tok, texts, max_len, batch) -> dict:
    from llm_trm.hidden import compute_hidden, tokenize_batch

    cached, t_cache = _timed(lambda: compute_hidden(model, tok, texts, max_len, batch))
    n_tok = int(cached["mask"].sum())

    @torch.no_grad()
    def plain():
        for s in range(0, len(texts), batch):
            b = tokenize_batch(tok, texts[s: s + batch], max_len)
            model(**b, output_hidden_states=True).hidden_states[-1].float()

    _, t_plain = _timed(plain)
    comp = DimensionCompressor(cached["hidden"].shape[-1], 48)
    _, t_epoch = _timed(lambda: [masked_mse(comp.reconstruct(cached["hidden"][s: s + batch]),
                                            cached["hidden"][s: s + batch]).backward()
                                 for s in range(0, len(texts), batch)])
    return {"tokens": n_tok, "cache_tok_per_s": n_tok / t_cache, "plain_forward_tok_per_s": n_tok / t_plain,
            "cache_vs_plain_speedup": t_plain / t_cache, "cached_epoch_s": t_epoch,
            "online_epoch_s": t_plain + t_epoch, "epoch_speedup_from_cache": (t_plain + t_epoch) / t_epoch,
            "data": cached}


def compressor_vs_svd(data: dict, d_values: list[int], steps: int, lr: float = 1e-3) -> list[dict]:
    n = len(data["hidden"])
    n_tr = int(n * 0.9)
    tr_h, tr_m = data["hidden"][:n_tr], data["mask"][:n_tr]
    he_h, he_m = data["hidden"][n_tr:], data["mask"][n_tr:]
    rows = tr_h[tr_m.bool()]
    refs = svd_reference(rows, d_values)
    out = []
    for d in d_values:
        seed_everything(0)
        comp = DimensionCompressor(rows.shape[1], d)
        opt = torch.optim.AdamW(comp.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(0)
        for _ in range(steps):
            idx = torch.randint(0, len(rows), (1024,), generator=g)
            opt.zero_grad()
            comp.reconstruction_loss(rows[idx]).backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            trained = compute_metrics(he_h, comp.reconstruct(he_h), he_m)["cosine_similarity"]
        svd = compute_metrics(he_h, apply_reference(he_h, refs[d]), he_m)["cosine_similarity"]
        out.append({"d_compressed": d, "trained_cos": trained, "svd_cos": svd, "ratio": trained / svd,
                    "meets_0.995": trained / svd >= 0.995, "steps": steps})
    return out


def trm_speed(d: int = 48, seq: int = 60, batch: int = 32, reps: int = 3) -> dict:
    from llm_trm.phase2 import Phase2Config, build_trm, supervision_step

    cfg = Phase2Config()
    model = build_trm(cfg, d)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, mask, tgt = torch.randn(batch, seq, d), torch.ones(batch, seq), torch.randn(batch, d)
    model.train()
    x_aug, pad, y, z = model.prepare(x, mask)

    def train():
        nonlocal y, z
        for _ in range(reps):
            y, z, _ = supervision_step(model, opt, sched, None, x_aug, pad, y, z, tgt, cfg, 0.7)

    _, t_train = _timed(train)
    model.eval()
    _, t_inf = _timed(lambda: [model.predict(x, mask, cfg.n_supervision_steps) for _ in range(reps)])
    return {"d_compressed": d, "seq_len": seq, "batch": batch, "params": sum(p.numel() for p in model.parameters()),
            "train_supervision_steps_per_s": reps / t_train, "train_samples_per_s": reps * batch / t_train,
            "inference_samples_per_s_nsup8": reps * batch / t_inf}


def run(args) -> dict:
    from llm_trm.data import load_stage1a_texts
    from shared_utils.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(args.model_name)
    model = load_causal_lm(args.model_name).eval()
    texts = load_stage1a_texts(args.data_path, args.num_samples, 42)
    cache = caching_speed(model, tok, texts, args.max_seq_length, 8)
    data = cache.pop("data")
    comp = compressor_vs_svd(data, args.d_values, args.steps)
    trm = trm_speed()
    res = {"command": "python -m llm_trm.bench " + " ".join(args.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                            time.gmtime()),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU (shared, loaded)",
           "caching": cache, "compressor_vs_svd": comp, "trm": trm}
    lines = [f"# Benchmark ({res['date']})", "", f"Command: `{res['command']}` (from `llm_trm/`); {res['machine']}.", "",
             "| D' | trained cos | SVD-optimum cos | ratio | >= 0.995 |", "|---|---|---|---|---|"]
    lines += [f"| {r['d_compressed']} | {r['trained_cos']:.4f} | {r['svd_cos']:.4f} | {r['ratio']:.4f} | "
              f"{'yes' if r['meets_0.995'] else 'no'} |" for r in comp]
    lines += ["", f"Hidden-state caching: {cache['cache_tok_per_s']:.0f} tok/s (base model, last layer) vs "
              f"{cache['plain_forward_tok_per_s']:.0f} tok/s plain forward with logits + all hidden states "
              f"(x{cache['cache_vs_plain_speedup']:.2f}); one cached epoch {cache['cached_epoch_s']:.2f} s vs "
              f"online {cache['online_epoch_s']:.2f} s (x{cache['epoch_speedup_from_cache']:.1f}), "
              f"{cache['tokens']} tokens.", "",
              f"SequenceTRM (D'={trm['d_compressed']}, {trm['params']:,} params, batch {trm['batch']}, L={trm['seq_len']}): "
              f"{trm['train_supervision_steps_per_s']:.2f} supervision steps/s ({trm['train_samples_per_s']:.1f} "
              f"samples/s), inference {trm['inference_samples_per_s_nsup8']:.1f} samples/s at N_sup=8."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / "bench.md", text)
    atomic_write_json(Path(args.out) / "bench.json", res)
    return res


@cli_main
def main(argv=None):
    import sys

    p = argparse.ArgumentParser(prog="llm_trm.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default="smollm2-135m")
    p.add_argument("--data_path", default=None)
    p.add_argument("--num_samples", type=int, default=96)
    p.add_argument("--max_seq_length", type=int, default=96)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--d_values", type=int, nargs="+", default=[12, 24, 48, 96, 192])
    p.add_argument("--out", default="results")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.argv = sys.argv[1:] if argv is None else argv
    run(args)


if __name__ == "__main__":
    main()
