"""Rank analysis of the learned update (the logic of notebooks/check_ranks.ipynb).

dW per targeted module = (current base weight + s * B A) - original weight for adapter methods, W_final - W_orig for
full fine-tuning. Singular values in float64. Numerical rank = #sigma > sigma_1 * max(m, n) * eps_fp32; effective
rank = exp(-sum p_i ln p_i), p_i = sigma_i / sum sigma (Roy & Vetterli 2007); stable rank = sum sigma^2 / sigma_1^2;
r90 = smallest k holding 90 % of sum sigma^2.

    python scripts/check_ranks.py --run_dir runs/table/superrelora --model_name smollm2-135m
"""

from __future__ import annotations

import statistics

import torch

from superrelora.merge import lora_layers

EPS32 = float(torch.finfo(torch.float32).eps)


def _plain_name(name: str) -> str:
    return name.removeprefix("base_model.model.")


@torch.no_grad()
def effective_weights(model: torch.nn.Module, targets: list[str] | None = None) -> dict[str, torch.Tensor]:
    """{module name (plain HF naming): effective weight}, base + s*B*A for LoRA layers."""
    out = {}
    layers = lora_layers(model)
    if layers:
        for name, layer in layers:
            out[_plain_name(name)] = layer.get_base_layer().weight.double() + layer.get_delta_weight("default").double()
        return out
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and (targets is None or any(t in name for t in targets)):
            out[_plain_name(name)] = mod.weight.double()
    return out


def spectrum_stats(delta: torch.Tensor) -> dict:
    sigma = torch.linalg.svdvals(delta.double())
    total = float(sigma.detach().sum())
    if total == 0.0:
        return {"numerical_rank": 0, "effective_rank": 0.0, "stable_rank": 0.0, "r90": 0, "sigma": []}
    tol = float(sigma[0]) * max(delta.shape) * EPS32
    p = sigma / sigma.sum()
    p = p[p > 0]
    energy = torch.cumsum(sigma**2, 0) / (sigma**2).sum()
    return {
        "numerical_rank": int((sigma > tol).sum()),
        "effective_rank": float(torch.exp(-(p * p.log()).sum())),
        "stable_rank": float((sigma**2).sum() / sigma[0] ** 2),
        "r90": int((energy < 0.9).sum()) + 1,
        "sigma": sigma.tolist(),
    }


@torch.no_grad()
def rank_report(model: torch.nn.Module, original: torch.nn.Module, targets: list[str] | None = None) -> dict:
    """Per-module stats of dW plus medians overall and per projection type."""
    now = effective_weights(model, targets)
    ref = {n: m.weight for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)}
    modules = {}
    for name, w in now.items():
        if name in ref:
            modules[name] = spectrum_stats(w - ref[name].double().to(w.device))
    return {"modules": modules, "summary": summarize(modules)}


def summarize(modules: dict) -> dict:
    def med(items, key):
        vals = [s[key] for s in items]
        return statistics.median(vals) if vals else None

    groups: dict[str, list] = {}
    for name, s in modules.items():
        groups.setdefault(name.split(".")[-1], []).append(s)
    out = {k: med(modules.values(), k) for k in ("numerical_rank", "effective_rank", "stable_rank", "r90")}
    out["by_type"] = {g: {k: med(v, k) for k in ("numerical_rank", "effective_rank")} for g, v in sorted(groups.items())}
    return out


def mean_spectrum(report: dict, top: int = 64) -> list[float]:
    """Normalised (sigma / sigma_1) spectrum averaged over modules, first ``top`` values, for plots."""
    spectra = [s["sigma"][:top] for s in report["modules"].values() if s["sigma"]]
    if not spectra:
        return []
    n = min(len(s) for s in spectra)
    return [sum(s[i] / s[0] for s in spectra) / len(spectra) for i in range(n)]


def plot_spectra(curves: dict[str, list[float]], out_png, r: int | None = None, title: str | None = None):
    """Overlay mean normalised singular-value spectra per method (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, ys in curves.items():
        if ys:
            ax.plot(range(1, len(ys) + 1), ys, marker=".", label=label)
    if r:
        ax.axvline(r, color="grey", ls=":", lw=1, label=f"r = {r}")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("sigma_i / sigma_1 (mean over modules)")
    ax.set_title(title or "Spectrum of the learned update dW")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
