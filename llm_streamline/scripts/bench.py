"""Benchmark: speed-up of the pruned model against its FLOP ceiling, and MFU of both training steps.

    python scripts/bench.py --out results/bench            # = make bench (SmolLM2-135M, n = 8, block 10..18)

Speed: the original (L layers) and the pruned model (L - n layers, one lightweight layer in the block's slot) and
the part both share (embedding, final norm, lm_head) are timed in interleaved rounds (order rotating) after
warm-up rounds, at two shapes: batch 1 decode (one new token on a 128-token KV cache) and batch 4 x 128 prefill.
The judged figure is speed-up / FLOP ceiling (``llm_streamline.flops``: F(L) / F(L - n), which counts the
lm_head that L / (L - n) leaves out). Beside it: the ceiling from the measured cost, fixed + per-layer
(t_fixed + (L - n) / L * (t_full - t_fixed)), per round. A ratio whose whole interval lies above 1 (faster than
the FLOPs allow) is flagged and makes the script exit 1: it points at the measurement, not at the model.
MFU: one MSE-loss step (the lightweight layer on stored hidden states) and one LLM-loss step (the whole pruned
model, only the lightweight layer trained), through the project's own step functions, as model FLOPs / median
step time / this machine's fp32 matmul rate measured in the same run. Every timing sample is stored.
Memory of the hidden-state stores (RAM vs memmap) is measured with ``--mem_sizes 8 32`` (subprocesses; off in
``make bench``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared_utils import bench, stats
from shared_utils.errors import UserError, cli_main

PROJECT = "llm_streamline"
RATIO_NOTE = (
    "`ratio` = speed-up / FLOP ceiling (the judged figure; 1 = the FLOP ceiling reached). `limit` = L/(L-n) / "
    "FLOP ceiling, the hard bound (the shared part cannot take less than 0 s): an interval beyond it is flagged "
    "`beyond limit` and the script exits 1; an interval above 1 but within it is flagged `above FLOP ceiling` "
    "(the lm_head's large matmul can run at a higher FLOP rate than the layers' small ones; at batch 1 per-layer "
    "overhead, not FLOPs, sets the time). FLOP ceiling = F(L)/F(L-n) with the lm_head and attention "
    "counted (row field `flop_ceiling`); `layer_ceiling` = L/(L-n), which ignores the lm_head; "
    "`measured_ceiling` = t_full / (t_shared + (L-n)/L (t_full - t_shared)) per round."
)
VERDICT_OK = ("every speed-up interval is within its physical limit L/(L-n) (rows flagged `above FLOP ceiling`, if "
              "any, are not a win: see the notes)")
VERDICT_BEYOND = "beyond limit: a speed-up interval lies above L/(L-n), which is physically impossible (measurement problem)"


def shared_part(model):
    """Embedding, final norm and lm_head: what the original and the pruned model both run."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model.model
    norm = getattr(base, "norm", None) or base.decoder.final_layer_norm

    def run(ids):
        with torch.no_grad():
            return model.get_output_embeddings()(norm(model.get_input_embeddings()(ids)))
    return run


def prefill_fns(models: dict, batch: int, seq_len: int, vocab: int) -> dict:
    ids = torch.randint(0, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    fns = {}
    for name, m in models.items():
        fns[name] = (lambda m=m: _forward(m, ids))
    fixed = shared_part(models["original"])
    fns["shared"] = lambda: fixed(ids)
    return fns


def _forward(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False, **kw)


def decode_fns(models: dict, context: int, vocab: int) -> dict:
    """One new token on a ``context``-token KV cache; the cache is cropped back after every call."""
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (1, context), generator=g)
    tok = torch.randint(0, vocab, (1, 1), generator=g)
    fns = {}
    for name, m in models.items():
        with torch.no_grad():
            cache = m(input_ids=prompt, use_cache=True).past_key_values

        def step(m=m, cache=cache):
            with torch.no_grad():
                m(input_ids=tok, past_key_values=cache, use_cache=True)
            cache.crop(-1)  # drop the new token again: every call sees the same context
        fns[name] = step
    fixed = shared_part(models["original"])
    fns["shared"] = lambda: fixed(tok)
    return fns


def speed_row(table, setting: str, samples: dict, flop_ceiling: float, layer_ceiling: float) -> bool:
    """Add one speed row; returns True when the ratio lies beyond its physical limit (flagged, exit 1).

    ``ratio`` = speed-up / FLOP ceiling (the judged figure). Its hard ``limit`` is L/(L-n) / FLOP ceiling: the
    shared part (embedding, norm, lm_head) cannot take less than 0 s. Between 1 and that limit the row is flagged
    "above FLOP ceiling" (possible when the large lm_head matmul runs at a higher FLOP rate than the layers' small
    ones, or when per-layer overhead dominates, as in batch-1 decode), not reported as a win.
    """
    speedup = bench.ratio_ci(samples["original"], samples["pruned"])
    ratio = stats.metric_value(speedup["mean"] / flop_ceiling, [c / flop_ceiling for c in speedup["ci95"]],
                               speedup["n"], seeds=1, unit="repeat (speed-up / FLOP ceiling)")
    limit = layer_ceiling / flop_ceiling
    keep = 1.0 / layer_ceiling  # (L - n) / L
    measured = [t / (f + keep * (t - f)) for t, f in zip(samples["original"], samples["shared"])]
    beyond = bench.beyond_limit(ratio, limit)
    method = f"{PROJECT}: {setting}"
    fields = {"flop_ceiling": flop_ceiling, "layer_ceiling": layer_ceiling,
              "samples_s": {k: [float(x) for x in v] for k, v in samples.items()}}
    if beyond:
        fields["flag"] = "beyond limit"
    elif bench.beyond_limit(ratio, 1.0):
        fields["flag"] = "above FLOP ceiling (within L/(L-n))"
    table.add(method, "ratio", ratio, **fields)
    table.add(method, "limit", stats.metric_value(limit))
    table.add(method, "speedup", speedup)
    m = bench.median_ci(measured)
    m.pop("samples")
    table.add(method, "measured_ceiling", {**m, "unit": "repeat (median of per-round fixed + per-layer ceiling)"})
    print(f"[bench] {setting}: speed-up {speedup['mean']:.3f} {speedup['ci95']}, FLOP ceiling {flop_ceiling:.3f}, "
          f"measured ceiling {m['mean']:.3f} {m['ci95']}, L/(L-n) {layer_ceiling:.3f}"
          + (" -- BEYOND LIMIT" if beyond else ""), flush=True)
    return beyond


def mfu_row(table, setting: str, samples: list[float], flops: float, peak: float) -> None:
    m = bench.median_ci([flops / s / peak for s in samples])
    t = bench.median_ci(samples)
    table.add(f"{PROJECT}: {setting}", "mfu", {**{k: v for k, v in m.items() if k != "samples"},
                                               "unit": "repeat (median)"},
              step_flops=flops, peak_flops=peak, step_seconds_median=t["mean"], samples_s=t["samples"])
    print(f"[bench] {setting}: {flops / 1e9:.2f} GFLOP, median {t['mean']:.3f} s, MFU {m['mean']:.3f} "
          f"{[round(c, 3) for c in m['ci95']]} of {peak / 1e9:.1f} GFLOP/s", flush=True)


def training_steps(a, original, pruned, best: int) -> dict:
    """Timing samples of one MSE-loss step and one LLM-loss step, via the project's step functions."""
    from llm_streamline import flops as F
    from llm_streamline.adapters import get_adapter
    from llm_streamline.lightweight import build_lightweight, trainable_parameters
    from llm_streamline.llm_train import freeze_all_but, lightweight_slots, llm_micro_step
    from llm_streamline.mse_train import mse_micro_step

    g = torch.Generator().manual_seed(2)
    d = original.config.hidden_size
    modules = build_lightweight(original, "layer", best, 1)
    params = trainable_parameters(modules, "layer", get_adapter(original))
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = torch.randn(a.batch_size, a.seq_len, d, generator=g)
    y = x + 0.1 * torch.randn(a.batch_size, a.seq_len, d, generator=g)
    mask = torch.ones(a.batch_size, a.seq_len, dtype=torch.long)

    def mse_step():
        mse_micro_step(original, modules, "layer", x, y, mask, 0, 1)
        opt.step()
        opt.zero_grad(set_to_none=True)

    trainable = trainable_parameters(lightweight_slots(pruned, best, 1), "layer", get_adapter(pruned))
    freeze_all_but(pruned, trainable)
    opt2 = torch.optim.AdamW(trainable, lr=1e-5)
    ids = torch.randint(0, original.config.vocab_size, (a.llm_batch_size, a.seq_len), generator=g)

    def llm_step():
        llm_micro_step(pruned, ids, backward=lambda loss: loss.backward())
        opt2.step()
        opt2.zero_grad(set_to_none=True)

    pruned.train()
    out = {"mse": (bench.time_samples(mse_step, a.warmup, a.step_repeats),
                   F.mse_step_flops(original, a.batch_size, a.seq_len)),
           "llm": (bench.time_samples(llm_step, a.warmup, a.step_repeats),
                   F.llm_step_flops(pruned, best, a.llm_batch_size, a.seq_len))}
    pruned.eval().requires_grad_(False)
    return out


def rss_anon_mib() -> float:
    """Anonymous resident memory (what the OOM killer counts; memmap pages are file-backed and reclaimable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def collect_child(model_name: str, mode: str, num: int, seq_len: int, cache_dir: str) -> None:
    """Runs in a subprocess: collect ``num`` pairs while a thread samples RssAnon; print the peak increase."""
    import threading

    from llm_streamline import data as D
    from llm_streamline.hidden_cache import collect_pairs
    from shared_utils.models import load_causal_lm

    model = load_causal_lm(model_name).eval()
    ids = torch.randint(0, model.config.vocab_size, (num, seq_len))
    base = rss_anon_mib()
    peak, stop = [base], __import__("threading").Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_mib())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    store = collect_pairs(model, D.batches(ids, 4), best=10, n=8, mode=mode, cache_dir=cache_dir)
    stop.set()
    thread.join()
    peak[0] = max(peak[0], rss_anon_mib())
    print(json.dumps({"mode": store.mode, "num": num, "store_mib": store.nbytes / 2**20, "base_mib": base,
                      "peak_mib": peak[0], "extra_peak_mib": peak[0] - base}))
    store.close()


def memory(a) -> list[dict]:
    rows = []
    for mode in ("memory", "disk"):
        for num in a.mem_sizes:
            cmd = [sys.executable, __file__, "--child", mode, str(num), "--model_name", a.model_name,
                   "--seq_len", str(a.seq_len), "--cache_dir", a.cache_dir]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def rebuild(a) -> None:
    """Rows from the samples of an earlier run (same command, date and machine; new analysis)."""
    src = Path(a.rebuild_from)
    if not src.is_file():
        raise UserError(f"--rebuild_from {src} does not exist")
    try:
        d = json.loads(src.read_text())
        rows = d["rows"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--rebuild_from {src} is not a bench JSON") from None
    meta = {k: v for k, v in d.items() if k not in ("table", "command", "preset", "machine", "date", "wall_s", "rows",
                                                   "comparisons", "verdict", "notes")}
    table = stats.ResultsTable(table=d["table"], command=d["command"], preset=d["preset"], machine=d["machine"],
                               date=d["date"], **meta)
    table.wall_s = d["wall_s"]
    beyond = False
    for r in rows:
        setting = r["method"].removeprefix(f"{PROJECT}: ")
        if "ratio" in r["metrics"]:
            beyond |= speed_row(table, setting, r["samples_s"], r["flop_ceiling"], r["layer_ceiling"])
        else:
            table.add(r["method"], "mfu", r["metrics"]["mfu"], **{k: v for k, v in r.items() if k not in ("method", "metrics")})
    table.notes = [RATIO_NOTE if n.startswith("`ratio`") else n for n in d.get("notes", [])]
    table.notes.append(f"Rows re-derived from the stored samples by `python scripts/bench.py --rebuild_from {src}`.")
    table.verdict = VERDICT_BEYOND if beyond else VERDICT_OK
    table.write(a.out)
    print(Path(a.out + ".md").read_text())
    if beyond:
        raise SystemExit(1)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default="smollm2-135m")
    p.add_argument("--layer_intervals", type=int, default=8)
    p.add_argument("--best_layer", type=int, default=10, help="block start (10 = SmolLM2's selected block at n=8)")
    p.add_argument("--batch_size", type=int, default=4, help="prefill batch (and MSE-step batch)")
    p.add_argument("--seq_len", type=int, default=128, help="prefill length = decode context length")
    p.add_argument("--llm_batch_size", type=int, default=1, help="LLM-loss step batch")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timed rounds per shape (>= 20 for make bench)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--step_repeats", type=int, default=5, help="timed repeats of each training step")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--mem_sizes", type=int, nargs="*", default=[])
    p.add_argument("--cache_dir", default="runs/bench_cache")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--rebuild_from", default=None,
                   help="re-derive every row from the timing samples stored in this bench JSON (no timing)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: a tiny random Llama
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for name in ("layer_intervals", "batch_size", "seq_len", "llm_batch_size", "rounds", "step_repeats"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(a, name)}")
    if a.warmup < 0 or a.threads < 0 or a.best_layer < 0:
        raise UserError("--warmup, --threads and --best_layer must be >= 0")
    if Path(a.out).is_dir() or Path(a.out + ".json").is_dir():
        raise UserError(f"--out {a.out} is a directory; give a file prefix such as results/bench")
    return a


def load_models(a):
    from llm_streamline.surgery import streamline_model

    if a.tiny:
        from shared_utils.models import tiny_llama

        original = tiny_llama(seed=0, num_hidden_layers=12, vocab_size=512, max_position_embeddings=512).eval()
    else:
        from shared_utils.models import load_causal_lm

        original = load_causal_lm(a.model_name, dtype=torch.float32).eval()
    n_layers = original.config.num_hidden_layers
    if not 1 <= a.layer_intervals < n_layers or a.best_layer > n_layers - a.layer_intervals - 1:
        raise UserError(f"layer_intervals {a.layer_intervals} / best_layer {a.best_layer} do not fit {n_layers} layers")
    return original, streamline_model(original, a.best_layer, a.layer_intervals), n_layers


@cli_main
def main(argv=None):
    a = parse(argv)
    if a.child:
        return collect_child(a.model_name, a.child[0], int(a.child[1]), a.seq_len, a.cache_dir)
    if a.rebuild_from:
        return rebuild(a)
    from llm_streamline import flops as F

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    original, pruned, L = load_models(a)
    n = a.layer_intervals
    models = {"original": original, "pruned": pruned}
    table = stats.ResultsTable(table="llm_streamline_bench", command="python scripts/bench.py "
                               + " ".join(sys.argv[1:] if argv is None else argv), preset="tiny" if a.tiny else "cpu",
                               threads=torch.get_num_threads(), torch=torch.__version__)
    peak = bench.matmul_peak_flops(torch.float32)
    beyond = False
    shapes = {f"n={n} batch 1 decode (1 new token, {a.seq_len}-token cache)": (
                  lambda: decode_fns(models, a.seq_len, original.config.vocab_size),
                  F.flop_ceiling(original, L, n, 1, 1, a.seq_len)),
              f"n={n} batch {a.batch_size}x{a.seq_len} prefill": (
                  lambda: prefill_fns(models, a.batch_size, a.seq_len, original.config.vocab_size),
                  F.flop_ceiling(original, L, n, a.batch_size, a.seq_len))}
    for setting, (make, ceiling) in shapes.items():
        samples = bench.interleaved_samples(make(), warmup=a.warmup, rounds=a.rounds)
        beyond |= speed_row(table, setting, samples, ceiling, L / (L - n))
    steps = training_steps(a, original, pruned, a.best_layer)
    mfu_row(table, f"MSE-loss step (1 layer, {a.batch_size}x{a.seq_len}, fp32)", steps["mse"][0], steps["mse"][1], peak)
    mfu_row(table, f"LLM-loss step ({L - n} layers, {a.llm_batch_size}x{a.seq_len}, fp32)", steps["llm"][0],
            steps["llm"][1], peak)
    table.meta["fp32_matmul_peak_flops"] = peak
    if a.mem_sizes:
        table.meta["memory"] = memory(a)
    table.notes += [
        f"Model {'tiny random Llama' if a.tiny else a.model_name}: {L} layers; pruned = block {a.best_layer}.."
        f"{a.best_layer + n} replaced by one layer ({L - n} layers). {a.warmup} warm-up rounds, then {a.rounds} "
        "interleaved rounds (rotating order) of original / pruned / shared part (embedding + final norm + lm_head).",
        RATIO_NOTE,
        "`mfu` = model FLOPs of the step / step time / fp32 matmul rate measured in this run "
        f"({peak / 1e9:.1f} GFLOP/s, 1024^3 matmul, best of 5); MSE step = 3 x forward FLOPs of one layer; "
        "LLM-loss step = forward of the pruned model + input gradients through the lm_head and the layers above "
        "the trained layer + 2 x forward of the trained layer.",
    ]
    table.verdict = VERDICT_BEYOND if beyond else VERDICT_OK
    table.write(a.out)
    print(Path(a.out + ".md").read_text())
    if beyond:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
