"""`make bench`: llm_trm's judged ratios with 95% intervals and their limits (results/bench.json + .md, EVIDENCE.md).

Rows (``method`` = ``llm_trm: <setting>``):
- ``phase-1 D'=<d>``: ratio = SVD-optimum train MSE / trained train MSE of the compressor after the README's
  10 epochs (SVD init, llm_trm.phase1.train_compressor); limit 1.0 (Eckart-Young: the truncated SVD is the exact
  MSE optimum of a tied rank-D' linear map on the train tokens; a ratio above 1 would be a bug). Interval:
  bootstrap over train sequences. mfu: the compressor training step's FLOPs / time / this machine's fp32
  matmul peak measured in the same run.
- ``hidden-state cache``: ratio = online epoch time / cached epoch time (the original re-ran the LLM every
  epoch), medians of interleaved repeats after 2 warm-ups; limit = the FLOP ceiling of that speed-up,
  (2 P_llm + 6 P_comp) / (6 P_comp) per token.
- ``TRM supervision step``: ratio = TRM step time / MLP-baseline step time (same batch, similar parameters);
  limit = the FLOP ratio of the two steps. mfu of the TRM step.

    python -m llm_trm.bench                 # ~2-4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from shared_utils.errors import cli_main


class Peak:
    """This machine's fp32 matmul peak, re-measured next to every MFU figure and kept as the running maximum (on
    a shared machine one measurement can land in a busy moment and make an MFU look > 1)."""

    def __init__(self):
        from shared_utils import bench

        self.value = bench.matmul_peak_flops(torch.float32)

    def update(self) -> float:
        from shared_utils import bench

        self.value = max(self.value, bench.matmul_peak_flops(torch.float32))
        return self.value


def _texts(n: int) -> list[str]:
    from llm_trm.data import load_stage1a_texts

    return load_stage1a_texts(None, n, 0)


def phase1_rows(t, data, d_values, peak, tmp: Path) -> None:
    from llm_trm.compression import apply_reference, svd_reference
    from llm_trm.llm import Tracker
    from llm_trm.phase1 import Phase1Config, train_compressor
    from shared_utils import bench, stats

    tr = data["train"]
    rows = tr["hidden"][tr["mask"].bool()]
    refs = svd_reference(rows, d_values)
    d_model = rows.shape[-1]
    m = tr["mask"].float()
    for d in d_values:
        cfg = Phase1Config(d_compressed=d, num_epochs=10, use_wandb=False, device="cpu", batch_size=4,
                           output_dir=str(tmp / f"d{d}"))
        train_compressor(cfg, data, d_model, d, tmp / f"d{d}", Tracker())
        from llm_trm.phase1 import load_compressor

        comp = load_compressor(tmp / f"d{d}" / "stage1a_best.pt")
        with torch.no_grad():
            e_tr = (((comp.reconstruct(tr["hidden"]) - tr["hidden"]) ** 2).sum(-1) * m).sum(1).numpy()
            e_svd = (((apply_reference(tr["hidden"], refs[d]) - tr["hidden"]) ** 2).sum(-1) * m).sum(1).numpy()
        ratio = stats.bootstrap_fn(lambda a, b: b.sum() / a.sum(), e_tr, e_svd, unit="train sequence")
        x = tr["hidden"][:4].requires_grad_(False)
        opt = torch.optim.AdamW(comp.parameters(), lr=0.0)

        def step(comp=comp, x=x, opt=opt):
            loss = ((comp.reconstruct(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        secs = bench.time_samples(step, warmup=2, repeats=10)
        # forward: encode + decode (2 matmuls, 2*D*D' each per token); backward: dW of both + dx of decode (3)
        flops = 5 * 2 * d_model * d * x.shape[0] * x.shape[1]
        name = f"llm_trm: phase-1 D'={d}"
        _add(t, name, ratio, 1.0, _mfu(flops, secs, peak.update()))


def _add(t, name, ratio, limit, mfu) -> None:
    from shared_utils import bench, stats

    flag = {"flag": "beyond limit"} if bench.beyond_limit(ratio, limit) else {}
    t.add(name, "ratio", ratio, **flag)
    t.add(name, "limit", stats.metric_value(limit))
    if mfu is not None:
        t.add(name, "mfu", mfu)


def _mfu(flops: float, secs, peak: float) -> dict:
    """MFU per timing sample -> median with a bootstrap 95% interval (shared_utils.bench.median_ci)."""
    from shared_utils import bench

    m = bench.median_ci([flops / s / peak for s in secs])
    return {**m, "unit": "repeat (fraction of the fp32 matmul peak measured in this run)"}


def cache_row(t, model, tok, texts, max_len, peak) -> None:
    from llm_trm.compression import DimensionCompressor
    from llm_trm.hidden import compute_hidden
    from shared_utils import bench

    comp = DimensionCompressor(model.config.hidden_size, 48)
    opt = torch.optim.AdamW(comp.parameters(), lr=0.0)
    cached = compute_hidden(model, tok, texts, max_len, len(texts))

    def epoch(h):
        loss = ((comp.reconstruct(h) - h) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    samples = bench.interleaved_samples({
        "online": lambda: epoch(compute_hidden(model, tok, texts, max_len, len(texts))["hidden"]),
        "cached": lambda: epoch(cached["hidden"])}, warmup=2, rounds=5)
    ratio = bench.ratio_ci(samples["online"], samples["cached"])
    p_llm = sum(p.numel() for p in model.model.parameters())
    p_comp = sum(p.numel() for p in comp.parameters())
    limit = (2 * p_llm + 6 * p_comp) / (6 * p_comp)
    n_tok = int(cached["hidden"].shape[0] * cached["hidden"].shape[1])
    mfu = _mfu(6 * p_comp * n_tok, samples["cached"], peak.update())
    _add(t, "llm_trm: hidden-state cache", ratio, limit, mfu)


def trm_row(t, peak) -> None:
    from llm_trm.phase2 import Phase2Config, build_trm, pad_collate, supervision_step
    from llm_trm.phase2_eval import MLP, mlp_hidden_for
    from shared_utils import bench

    torch.manual_seed(0)
    d, L, b = 48, 16, 64
    cfg = Phase2Config(n_heads=4, n_latent_steps=2, n_deep_recursions=2, dropout=0.0)
    trm = build_trm(cfg, d)
    xs = [torch.randn(L, d) for _ in range(b)]
    y = torch.randn(b, d)
    opt = torch.optim.AdamW(trm.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, mask = pad_collate(xs)
    p_trm = sum(p.numel() for p in trm.parameters())
    mlp = MLP(L * d, mlp_hidden_for(p_trm, L * d, d), d)
    mopt = torch.optim.AdamW(mlp.parameters(), lr=0.0)
    flat = x.reshape(b, -1)

    def trm_step():
        x_aug, pad, yy, zz = trm.prepare(x, mask)
        supervision_step(trm, opt, sched, None, x_aug, pad, yy, zz, y, cfg, 0.7)

    def mlp_step():
        loss = ((mlp(flat) - y) ** 2).mean()
        mopt.zero_grad()
        loss.backward()
        mopt.step()

    samples = bench.interleaved_samples({"trm": trm_step, "mlp": mlp_step}, warmup=2, rounds=10)
    ratio = bench.ratio_ci(samples["trm"], samples["mlp"])
    p_net = sum(p.numel() for p in trm.net.parameters())
    tokens = b * (L + 1)
    calls = 3 * (cfg.n_latent_steps + 1) + (cfg.n_deep_recursions - 1) * (cfg.n_latent_steps + 1)
    trm_flops = 2 * p_net * tokens * calls
    mlp_flops = 6 * sum(p.numel() for p in mlp.parameters()) * b
    # a speed ratio cannot be below the FLOP ratio unless the MLP ran slower per FLOP than the TRM: judged
    # against it as a floor, not a ceiling
    flag = {"flag": "beyond limit"} if bench.beyond_limit(ratio, trm_flops / mlp_flops, higher_is_better=False) else {}
    from shared_utils import stats

    t.add("llm_trm: TRM supervision step vs MLP step", "ratio", ratio, **flag)
    t.add("llm_trm: TRM supervision step vs MLP step", "limit", stats.metric_value(trm_flops / mlp_flops))
    t.add("llm_trm: TRM supervision step vs MLP step", "mfu", _mfu(trm_flops, samples["trm"], peak.update()))


def run(out_prefix: str, num_samples: int, max_seq_length: int, d_values: list[int]) -> int:
    import tempfile

    from llm_trm.data import split_heldout
    from llm_trm.hidden import compute_hidden
    from shared_utils import stats
    from shared_utils.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    peak = Peak()
    t = stats.ResultsTable("bench", "make bench", preset="cpu")
    tok, model = load_tokenizer("smollm2-135m"), load_causal_lm("smollm2-135m").eval()
    texts = _texts(num_samples)
    tr_t, he_t = split_heldout(texts, 0.25)
    data = {"train": compute_hidden(model, tok, tr_t, max_seq_length, 8),
            "heldout": compute_hidden(model, tok, he_t, max_seq_length, 8)}
    with tempfile.TemporaryDirectory() as tmp:
        phase1_rows(t, data, d_values, peak, Path(tmp))
    cache_row(t, model, tok, texts[:8], 48, peak)
    trm_row(t, peak)
    t.meta["fp32_matmul_peak_flops"] = peak.value
    flagged = [r["method"] for r in t.rows.values() if r.get("flag")]
    t.verdict = ("all ratios within their limits" if not flagged else f"beyond limit (a measurement bug until "
                 f"explained): {flagged}")
    t.notes += [f"{num_samples} embedded-corpus texts x {max_seq_length} tokens (75% train / 25% held out) for "
                "phase 1; 8 texts x 48 tokens for the cache row; TRM: D'=48, 16 context states, batch 64, n=2, T=2.",
                "Timing ratios are medians of interleaved repeats (2 warm-ups) with bootstrap 95% intervals; on the "
                "shared 2-core machine absolute speeds vary with load, the ratios are what is judged."]
    t.write(out_prefix)
    print(Path(out_prefix).with_suffix(".md").read_text())
    return 1 if flagged else 0


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(prog="llm_trm.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/bench")
    p.add_argument("--num_samples", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--d_values", type=int, nargs="+", default=[12, 48, 192])
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    sys.exit(run(a.out, a.num_samples, a.max_seq_length, a.d_values))


if __name__ == "__main__":
    main()
