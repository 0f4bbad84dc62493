"""Benchmark: training step time and FLOPs of TurboConn (g = 4, 16, 64) vs the one-pass baseline, and
generation tokens/s with the KV cache + bridge carries vs recomputation without a cache. One run, one table.

    python -m high_to_low.bench --seq_len 256 --batch_size 8 --hidden 128 --layers 6 --threads 1

The grouped loop is sequential by design (T/g calls instead of 1) but reuses the KV cache, so its FLOPs
stay at the baseline's (causal attention over the cache even does less than a full T x T pass).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from high_to_low.get_model import TurboConnLM, preset_bridges, tiny_config
from high_to_low.reasoning_datasets import WordTokenizer


def make_model(args, group_size: int, bridged: bool) -> TurboConnLM:
    from transformers import LlamaForCausalLM

    cfg = tiny_config(WordTokenizer(), num_layers=args.layers, hidden=args.hidden, heads=4, mlp=int(2.7 * args.hidden))
    torch.manual_seed(0)
    lm = LlamaForCausalLM(cfg)
    bridges = preset_bridges("tiny", args.layers) if bridged else []
    model = TurboConnLM(lm, bridges, 32, 100, group_size)
    for up in model.up:
        torch.nn.init.normal_(up.weight, 0, 0.02)  # non-zero, as after some training
    return model


def step(model, ids) -> None:
    model.zero_grad(set_to_none=True)
    model(ids).float().logsumexp(-1).mean().backward()


def time_step(model, ids, reps: int) -> float:
    step(model, ids)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(model, ids)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_flops(model, ids) -> int:
    with FlopCounterMode(display=False) as counter:
        step(model, ids)
    return counter.get_total_flops()


def generation_speed(model, prompt, new_tokens: int, use_cache: bool) -> float:
    t0 = time.perf_counter()
    model.generate(prompt, new_tokens, use_cache=use_cache)
    return prompt.shape[0] * new_tokens / (time.perf_counter() - t0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--group_sizes", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--prompt_len", type=int, default=32)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = WordTokenizer().vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (args.batch_size, args.seq_len), generator=g)
    base = make_model(args, args.seq_len, bridged=False)
    base_t, base_f = time_step(base, ids, args.reps), count_flops(base, ids)
    print(f"training step, batch {args.batch_size} x {args.seq_len} tokens, hidden {args.hidden}, "
          f"{args.layers} layers, {torch.get_num_threads()} thread(s)")
    print(f"{'arm':<22}{'calls':>6}{'s/step':>10}{'time ratio':>12}{'GFLOP':>10}{'FLOP ratio':>12}")
    print(f"{'baseline (1 pass)':<22}{1:>6}{base_t:>10.4f}{1.0:>12.2f}{base_f / 1e9:>10.3f}{1.0:>12.3f}")
    out = {"baseline": {"s_per_step": base_t, "flops": base_f}}
    for gs in args.group_sizes:
        model = make_model(args, gs, bridged=True)
        t, f = time_step(model, ids, args.reps), count_flops(model, ids)
        calls = -(-args.seq_len // gs)
        print(f"{f'TurboConn g={gs}':<22}{calls:>6}{t:>10.4f}{t / base_t:>12.2f}{f / 1e9:>10.3f}{f / base_f:>12.3f}")
        out[f"g{gs}"] = {"s_per_step": t, "flops": f, "time_ratio": t / base_t, "flop_ratio": f / base_f}
    prompt = ids[: min(4, args.batch_size), : args.prompt_len]
    print(f"\ngreedy generation, {prompt.shape[0]} x ({args.prompt_len} prompt + {args.new_tokens} new) tokens")
    print(f"{'arm':<22}{'cache tok/s':>12}{'no-cache tok/s':>16}{'speed-up':>10}")
    for name, model in (("baseline", make_model(args, 4, bridged=False)), ("TurboConn g=4", make_model(args, 4, True))):
        with_cache = generation_speed(model, prompt, args.new_tokens, True)
        without = generation_speed(model, prompt, args.new_tokens, False)
        print(f"{name:<22}{with_cache:>12.1f}{without:>16.1f}{with_cache / without:>10.2f}")
        out[f"generate_{name}"] = {"cache_tok_s": with_cache, "no_cache_tok_s": without}
    return out


if __name__ == "__main__":
    main()
