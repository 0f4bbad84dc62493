"""`make bench`: the ratios hier_bd3lm is judged by, with 95% intervals from interleaved repeats (shared_utils.bench).

Rows (EVIDENCE.md shape, `results/bench.json` + `.md`):
- `hier_bd3lm: 2L BD3 step / AR step` -- the vectorised BD3-LM training step over [Q | x_t | x_0] against the AR
  step of the same network on [Q | x_0]; metric `ratio` (median ratio of step times), `limit` = the token-count
  ratio (Q + 2G) / (Q + G) (the linear layers' FLOP ratio: the step cannot be cheaper than that), `mfu` of each step.
- `hier_bd3lm: KV cache speed-up (BD3 sampling)` -- semi-AR sampling of the whole generated region without / with
  the KV cache (same tokens, checked); `limit` = tokens processed without the cache / with it (the FLOP ceiling
  of the speed-up, attention ignored).
- `hier_bd3lm: KV cache speed-up (AR sampling)` -- the same for the AR sampler.
A ratio whose whole interval lies beyond its limit is flagged ("flag": "beyond limit") and the script exits 1.
MFU = model FLOPs (6 x non-embedding parameters x processed tokens; attention not counted) / step time / the
fp32 matmul peak measured in the same run (shared_utils.bench.matmul_peak_flops).

python scripts/bench.py --out results/bench            # about 2-3 minutes on 2 cores
"""

import argparse
import sys

from hier_bd3lm.guards import check_output_path
from shared_utils.errors import UserError, cli_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench", help="output prefix (.json and .md)")
    p.add_argument("--lengths", default="64,64,128", help="question,plan,exec slots")
    p.add_argument("--block_size", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    try:
        a.slots = [int(v) for v in a.lengths.split(",")]
    except ValueError:
        raise UserError(f"--lengths takes three comma-separated integers, got {a.lengths}") from None
    if len(a.slots) != 3 or min(a.slots) < 1:
        raise UserError(f"--lengths takes three positive integers, got {a.lengths}")
    for k in ("block_size", "hidden", "layers", "heads", "vocab", "batch", "rounds", "threads"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
    if a.warmup < 2:
        raise UserError("--warmup must be >= 2")
    check_output_path(a.out, "--out")
    return a


def build(layout, a, algo):
    import torch

    from hier_bd3lm.diffusion import BlockDiffusion
    from hier_bd3lm.model import DiT

    torch.manual_seed(0)
    net = DiT(a.vocab, a.hidden, a.layers, a.heads, 32, 0.0, causal=algo == "ar")
    with torch.no_grad():  # non-zero output layer so that sampling is not uniform noise
        net.output.weight.normal_(0, 0.02)
    return BlockDiffusion(net, layout, a.vocab - 1, algo).to(a.device)


def non_embedding_params(model) -> int:
    return sum(p.numel() for n, p in model.backbone.named_parameters() if "embed" not in n)


def sample_tokens(layout, cache: bool, algo: str) -> int:
    """Tokens pushed through the network by one sampling run (the FLOP count up to a constant)."""
    q, bs, g = layout.question_len, layout.block_size, layout.gen_len
    if algo == "ar":
        return (q - 1 + g) if cache else sum(range(q, q + g))
    nb = g // bs
    if cache:  # question prefill, L' steps of one block each, one store pass per block
        return q + nb * (bs * bs + bs)
    return sum(bs * (q + (b + 1) * bs) for b in range(nb))


@cli_main
def main(argv=None):
    a = parse_args(argv)
    import torch

    from hier_bd3lm.ema import EMA
    from hier_bd3lm.masks import Layout
    from hier_bd3lm.sampling import Sampler
    from hier_bd3lm.train import train_step
    from shared_utils import bench, stats

    torch.set_num_threads(a.threads)
    q, p, e = a.slots
    lay = Layout(q, p, e, a.block_size)
    peak = bench.matmul_peak_flops(torch.float32, device=a.device)
    t = stats.ResultsTable(table="bench", command="python " + " ".join(sys.argv), preset=a.device)
    failed = []

    # (1) training step: 2L BD3-LM vs AR
    x0 = torch.randint(4, a.vocab - 1, (a.batch, lay.total_len), device=a.device)
    lm = torch.ones_like(x0)
    lm[:, :q] = 0
    steps, models = {}, {}
    for algo in ("ar", "bd3lm"):
        m = build(lay, a, algo)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        ema = EMA(m.backbone.parameters(), 0.999)
        g = torch.Generator(device=a.device).manual_seed(0)
        models[algo] = m
        steps[algo] = (lambda m=m, opt=opt, ema=ema, g=g: train_step(m, opt, None, ema, [(x0, lm)], g))
    samples = bench.interleaved_samples(steps, warmup=a.warmup, rounds=a.rounds)
    name = "hier_bd3lm: 2L BD3 step / AR step"
    r = bench.ratio_ci(samples["bd3lm"], samples["ar"])
    limit = (q + 2 * lay.gen_len) / (q + lay.gen_len)
    flag = bench.beyond_limit(r, limit, higher_is_better=False)
    t.add(name, "ratio", r, **({"flag": "beyond limit"} if flag else {}))
    t.add(name, "limit", stats.metric_value(limit))
    for algo, toks in (("bd3lm", q + 2 * lay.gen_len), ("ar", lay.total_len)):
        flops = 6 * non_embedding_params(models[algo]) * a.batch * toks
        mfu = bench.median_ci([flops / s / peak for s in samples[algo]])
        mfu.pop("samples", None)
        t.add(name, f"mfu_{algo}" if algo == "ar" else "mfu", mfu)
    failed += [name] if flag else []

    # (2) sampling with vs without the KV cache (same tokens)
    for algo in ("bd3lm", "ar"):
        m = models[algo].eval()
        x = torch.randint(4, a.vocab - 1, (1, lay.total_len), device=a.device)
        x[:, q:] = m.mask_id
        out = {}

        def run(cache, m=m, x=x, out=out):
            g = torch.Generator(device=a.device).manual_seed(0)
            out[cache] = Sampler(m, 0.9, cache).sample(x, "full", g)[0]

        s = bench.interleaved_samples({"cache": lambda: run(True), "none": lambda: run(False)},
                                      warmup=a.warmup, rounds=max(3, a.rounds // 2))
        name = f"hier_bd3lm: KV cache speed-up ({'BD3' if algo == 'bd3lm' else 'AR'} sampling)"
        r = bench.ratio_ci(s["none"], s["cache"])
        limit = sample_tokens(lay, False, algo) / sample_tokens(lay, True, algo)
        flag = bench.beyond_limit(r, limit, higher_is_better=True)
        same = bool(torch.equal(out[True], out[False]))
        t.add(name, "ratio", r, same_tokens=same, **({"flag": "beyond limit"} if flag else {}))
        t.add(name, "limit", stats.metric_value(limit))
        failed += [name] if flag or not same else []
    t.notes += [f"Model: DiT hidden {a.hidden}, {a.layers} layers, {a.heads} heads, vocab {a.vocab}; slots Q/P/E = "
                f"{q}/{p}/{e}, L' = {a.block_size}; batch {a.batch} (training), 1 (sampling); {a.threads} thread(s), "
                f"{a.device}; {a.rounds} interleaved rounds after {a.warmup} warm-ups.",
                f"fp32 matmul peak measured in this run: {peak / 1e9:.1f} GFLOP/s. mfu = 6 x non-embedding params x "
                "processed tokens / median step time / peak (attention FLOPs not counted); mfu_ar is the AR step's.",
                "ratio of the training step: lower is better, its limit is a floor; KV speed-up: higher is better, its "
                "limit is a ceiling."]
    t.verdict = ("all ratios inside their limits; same tokens with and without the cache" if not failed
                 else f"FLAGGED: {', '.join(failed)}")
    t.write(a.out)
    print(t.to_markdown())
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
