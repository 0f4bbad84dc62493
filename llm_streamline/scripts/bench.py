"""Benchmark: forward tokens/s of the pruned vs the original model (one run, interleaved), and peak memory of
hidden-state collection (RAM store vs memory-mapped disk store) against the data size.

    python scripts/bench.py --model_name smollm2-135m --layer_intervals 8 --out results/bench

Speed: the goal is >= 0.95 of the ideal speed-up L / (L - n) (layers are the only thing removed; embeddings
and lm_head stay). Memory: each collection runs in a fresh subprocess so ru_maxrss is its own peak.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json, atomic_write_text


def tokens_per_s(model, ids, reps: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(reps):
            t = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            out.append(ids.numel() / (time.perf_counter() - t))
    return out


def speed(a) -> dict:
    from llm_streamline.surgery import streamline_model
    from shared_utils.models import load_causal_lm

    original = load_causal_lm(a.model_name).eval()
    n_layers = original.config.num_hidden_layers
    pruned = streamline_model(original, a.best_layer, a.layer_intervals)
    ids = torch.randint(0, original.config.vocab_size, (a.batch_size, a.seq_len))
    tokens_per_s(original, ids, 1), tokens_per_s(pruned, ids, 1)  # warm-up
    orig, prun = [], []
    for _ in range(a.rounds):  # interleave so that load changes on a shared machine hit both alike
        orig += tokens_per_s(original, ids, 1)
        prun += tokens_per_s(pruned, ids, 1)
    o, p = statistics.median(orig), statistics.median(prun)
    ideal = n_layers / (n_layers - a.layer_intervals)
    return {"original_tok_s": o, "pruned_tok_s": p, "speedup": p / o, "ideal_layer_speedup": ideal,
            "fraction_of_ideal": (p / o) / ideal, "layers": [n_layers, n_layers - a.layer_intervals],
            "batch": [a.batch_size, a.seq_len], "rounds": a.rounds}


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
    peak, stop = [base], threading.Event()

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


@cli_main
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model_name", default="smollm2-135m")
    p.add_argument("--layer_intervals", type=int, default=8)
    p.add_argument("--best_layer", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--mem_sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--cache_dir", default="runs/bench_cache")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return collect_child(a.model_name, a.child[0], int(a.child[1]), a.seq_len, a.cache_dir)
    result = {"command": "python scripts/bench.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "speed": speed(a), "memory": memory(a)}
    atomic_write_json(f"{a.out}.json", result)
    s = result["speed"]
    lines = [f"# Benchmark ({result['date']}, {result['machine']})", "", f"Command: `{result['command']}`", "",
             f"Forward tokens/s, batch {s['batch'][0]}x{s['batch'][1]}, median of {s['rounds']} interleaved rounds: "
             f"original ({s['layers'][0]} layers) {s['original_tok_s']:.0f}, pruned ({s['layers'][1]} layers) "
             f"{s['pruned_tok_s']:.0f}; speed-up {s['speedup']:.3f} vs ideal {s['ideal_layer_speedup']:.3f} "
             f"= {100 * s['fraction_of_ideal']:.1f}% of ideal.", "",
             "| store | sequences | store size (MiB) | extra peak anonymous RSS during collection (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['num']} | {r['store_mib']:.1f} | {r['extra_peak_mib']:.1f} |" for r in result["memory"]]
    atomic_write_text(f"{a.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
