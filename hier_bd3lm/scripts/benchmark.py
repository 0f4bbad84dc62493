"""Speed benchmark, ratios measured in one run on one machine:
(1) vectorized 2L BD3-LM training step vs the AR step of the same network (goal <= 2.2x);
(2) KV-cached vs uncached sampling for the full 512 layout (128/128/256, L'=16; goal >= 3x, same tokens);
(3) plan-generation throughput per backend (rule; hf = embedded SmolLM2; vllm when installed).

python scripts/benchmark.py --output results/benchmark.json [--hf_examples 4] [--skip_hf]
"""

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

from hier_bd3lm.diffusion import BlockDiffusion
from hier_bd3lm.masks import Layout
from hier_bd3lm.model import DiT
from hier_bd3lm.sampling import Sampler
from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json, atomic_write_text

PROJECT = Path(__file__).resolve().parents[1]


def build(layout, vocab, algo, hidden, layers, heads):
    torch.manual_seed(0)
    net = DiT(vocab, hidden, layers, heads, 32, 0.0, causal=algo == "ar")
    with torch.no_grad():  # non-zero output layer so sampling is not uniform noise
        net.output.weight.normal_(0, 0.02)
    return BlockDiffusion(net, layout, vocab - 1, algo)


def time_steps(model, x0, lm, n):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    model.train()
    for i in range(n + 1):
        if i == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        model.loss(x0, lm, g).backward()
        opt.step()
    return (time.perf_counter() - t0) / n


def bench_train(args):
    lay = Layout(128, 128, 256, 16)
    x0 = torch.randint(4, args.vocab - 1, (args.batch, lay.total_len))
    lm = torch.ones_like(x0)
    lm[:, :128] = 0
    out = {}
    for algo in ("ar", "bd3lm"):
        out[algo] = time_steps(build(lay, args.vocab, algo, args.hidden, args.layers, args.heads), x0, lm, args.steps)
    return {"layout": "128/128/256, L'=16", "batch": args.batch, "seconds_per_step": out,
            "ratio_bd3lm_over_ar": out["bd3lm"] / out["ar"]}


def bench_sampling(args):
    lay = Layout(128, 128, 256, 16)
    res = {}
    for algo in ("bd3lm", "ar"):
        model = build(lay, args.vocab, algo, args.hidden, args.layers, args.heads).eval()
        x = torch.randint(4, args.vocab - 1, (1, lay.total_len))
        x[:, 128:] = model.mask_id
        toks, secs = {}, {}
        for cache in (True, False):
            g = torch.Generator().manual_seed(0)
            toks[cache], st = Sampler(model, 0.9, cache).sample(x, "full", g)
            secs[cache] = st["seconds"]
        res[algo] = {"seconds_kv_cache": secs[True], "seconds_no_cache": secs[False], "nfe": st["nfe"],
                     "speedup": secs[False] / secs[True], "same_tokens": bool(torch.equal(toks[True], toks[False]))}
    return res


def bench_plans(args):
    from hier_bd3lm.plans import make_backend
    from shared_utils.data import load_gsm8k

    rows = load_gsm8k("test", args.data_path, max(args.hf_examples, 200))
    out = {}
    t0 = time.perf_counter()
    make_backend("rule", "", 0, 1, 0, "readme").generate(rows)
    out["rule"] = {"examples": len(rows), "examples_per_second": len(rows) / (time.perf_counter() - t0)}
    if not args.skip_hf:
        b = make_backend("hf", "smollm2-135m", 0.0, 1.0, args.hf_max_tokens, "readme")
        t0 = time.perf_counter()
        b.generate(rows[: args.hf_examples])
        s = time.perf_counter() - t0
        out["hf_smollm2_135m"] = {"examples": args.hf_examples, "max_tokens": args.hf_max_tokens,
                                  "examples_per_second": args.hf_examples / s}
    try:
        import vllm  # noqa: F401
        out["vllm"] = "installed but not benchmarked on this machine"
    except ImportError:
        out["vllm"] = "not installed (GPU only)"
    return out


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="results/benchmark.json")
    p.add_argument("--data_path", default=str(PROJECT.parent.parent / "shared" / "data" / "gsm8k"))
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--hf_examples", type=int, default=4)
    p.add_argument("--hf_max_tokens", type=int, default=64)
    p.add_argument("--skip_hf", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
           "model": f"DiT hidden {args.hidden}, {args.layers} layers, {args.heads} heads, vocab {args.vocab}",
           "train_step": bench_train(args), "sampling": bench_sampling(args), "plan_generation": bench_plans(args)}
    atomic_write_json(args.output, res)
    t, s = res["train_step"], res["sampling"]
    md = [f"# Benchmark ({res['date']}, {res['machine']}, torch {res['torch']})", "", f"`{res['command']}`", "",
          f"Model: {res['model']}; layout {t['layout']}; batch {t['batch']}.", "",
          "| measurement | value |", "|---|---|",
          f"| AR training step (s) | {t['seconds_per_step']['ar']:.3f} |",
          f"| BD3-LM 2L training step (s) | {t['seconds_per_step']['bd3lm']:.3f} |",
          f"| ratio BD3-LM / AR (goal <= 2.2) | {t['ratio_bd3lm_over_ar']:.2f}x |"]
    for algo, r in s.items():
        md += [f"| {algo} sampling 384 tokens, KV cache (s) | {r['seconds_kv_cache']:.2f} |",
               f"| {algo} sampling, no cache (s) | {r['seconds_no_cache']:.2f} |",
               f"| {algo} cache speed-up (goal >= 3) / same tokens / NFEs | {r['speedup']:.2f}x / {r['same_tokens']} / {r['nfe']} |"]
    for name, r in res["plan_generation"].items():
        val = r if isinstance(r, str) else f"{r['examples_per_second']:.2f} examples/s"
        md.append(f"| plan generation {name} | {val} |")
    atomic_write_text(Path(args.output).with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
