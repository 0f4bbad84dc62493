"""Phase 2: train the SequenceTRM to map compressed pre-thinking context to the compressed post-thinking state.

    python -m src.train.phase2_trm --data_path ./data/hidden_pairs/hidden_pairs.pt \\
        --compressor_checkpoint ./checkpoints/phase1/stage1b_best.pt        # original command (from llm_trm/)
    python -m llm_trm.phase2 --data_path runs/table/pairs/hidden_pairs.pt --compressor_checkpoint ... --n_heads 4

Per batch: N_sup deep-supervision steps, each one optimizer step on MSE(y_hat, target) + 0.5 * halt loss,
(y, z) detached in between ([LT] per_step_updates, "paper style"). Fixes over [LT] (switches in brackets):
targets standardised per dimension and inputs scaled to RMS 1 with train statistics, read out by a linear
head, no weight decay on norm gains and biases [--no_standardize_targets --no_output_head --decay_norms: the
original's RMSNorm-pinned output, whose RMS stays near 1 while the targets' is ~7]; EMA with warm-up
[--no_ema_warmup]; halt target detached [--no_detach_halt_target]; evaluation and best.pt use the EMA
weights [--no_eval_with_ema]; the seed is set; the cosine LR spans the real number of optimizer steps; the
best epoch is chosen on a validation split carved from the training pairs (never on the held-out test
pairs); held-out problems are disjoint from training (the datagen's ``split``); all predictors of
:mod:`llm_trm.phase2_eval` are scored on the same held-out pairs. Targets whose next token is the answer in
fewer than half of the pairs are refused.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llm_trm.checks import cli_entry, require_positive
from llm_trm.data import split_heldout
from llm_trm.phase1 import load_compressor, warmup_cosine
from llm_trm.trm import EMA, SequenceTRM, TRMConfig, halt_loss
from shared_utils.errors import NonFiniteLossError, UserError
from shared_utils.runs import RunDir, atomic_torch_save, seed_everything


@dataclass
class Phase2Config:
    data_path: str = "./data/hidden_pairs/hidden_pairs.pt"
    compressor_checkpoint: str = "./checkpoints/phase1/stage1b_best.pt"
    output_dir: str = "./checkpoints/phase2"
    n_layers: int = 2
    n_heads: int = 8
    n_latent_steps: int = 6  # n
    n_deep_recursions: int = 3  # T
    n_supervision_steps: int = 8  # N_sup
    dropout: float = 0.1
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    num_epochs: int = 100
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.1
    use_ema: bool = True
    ema_decay: float = 0.999
    halt_loss_weight: float = 0.5
    bce_halt_loss: bool = False
    halt_threshold: float = 0.7
    adaptive_halt_threshold: bool = True
    detach_halt_target: bool = True  # False: [LT] bug (b)
    eval_with_ema: bool = True  # False: [LT] bug (c), raw weights
    heldout_fraction: float = 0.1
    seed: int = 42
    use_wandb: bool = False
    wandb_project: str = "llm-trm-phase2"
    resume: bool = False  # continue from {output_dir}/last.pt (written atomically after every epoch)
    standardize_targets: bool = True  # False: raw targets and inputs, as [LT]
    output_head: bool = True  # False: the prediction is the RMSNorm-pinned y[:, -1], as [LT]
    decay_norms: bool = False  # True: weight decay on norm gains and biases too, as [LT]
    ema_warmup: bool = True  # False: constant EMA decay from step 1, as [LT]
    max_positions: int = 128  # learned context positions (0: none, as [LT])
    val_fraction: float = 0.1  # of the training pairs, for choosing the best epoch (and baselines' settings)
    min_target_hit_rate: float = 0.5  # refuse pairs whose target predicts the answer less often than this
    step_delay: float = 0.0  # seconds slept per optimizer step (hidden; lets tests kill a run mid-way)
    refit_compressor: str = "none"  # svd: W <- top-D' right singular vectors of the *training* pairs' states


def pad_collate(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right zero-padding to the longest context; mask [B, L] with 1 on real positions."""
    L = max(x.shape[0] for x in xs)
    out = torch.zeros(len(xs), L, xs[0].shape[-1])
    mask = torch.zeros(len(xs), L, dtype=torch.long)
    for i, x in enumerate(xs):
        out[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return out, mask


def load_pairs(path: str | Path) -> dict:
    from llm_trm.checks import load_torch_file

    data = load_torch_file(path, "hidden pairs file")
    if not isinstance(data, dict) or not {"hidden_pre", "hidden_post"} <= set(data):
        raise UserError(f"{path} is not a phase-2 hidden-pairs file (run phase2_datagen)")
    if len(data["hidden_pre"]) < 2:
        raise UserError(f"{path} holds {len(data['hidden_pre'])} pairs; need at least 2")
    return data


@torch.no_grad()
def compress_pairs(data: dict, comp) -> tuple[list[torch.Tensor], torch.Tensor]:
    if data["hidden_post"].shape[-1] != comp.d_model:
        raise UserError(f"pairs have D={data['hidden_post'].shape[-1]} but the compressor expects D={comp.d_model}")
    return [comp(h.float()) for h in data["hidden_pre"]], comp(data["hidden_post"].float())


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per-sample cosine (mean), MSE, and batch relative error, as [LT] phase 2 logs them."""
    return {"cosine_similarity": F.cosine_similarity(pred, target, dim=-1).mean().item(),
            "mse": F.mse_loss(pred, target).item(),
            "relative_error": (torch.linalg.norm(pred - target) / torch.linalg.norm(target)).item()}


def build_trm(cfg: Phase2Config, d: int) -> SequenceTRM:
    if d % cfg.n_heads:
        raise UserError(f"D'={d} must be divisible by --n_heads {cfg.n_heads}")
    return SequenceTRM(TRMConfig(d_model=d, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n=cfg.n_latent_steps,
                                 T=cfg.n_deep_recursions, dropout=cfg.dropout, output_head=cfg.output_head,
                                 max_positions=cfg.max_positions))


def param_groups(model: torch.nn.Module, weight_decay: float, decay_norms: bool) -> list[dict]:
    """Weight decay on matrices only (norm gains, biases and the reasoning token are not pulled to 0),
    unless ``decay_norms`` ([LT]: everything decayed, which also shrinks the output norm's gain)."""
    if decay_norms:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    def decayed(n, p):
        return p.ndim >= 2 and "reasoning_token" not in n and "pos_emb" not in n

    mats = [p for n, p in model.named_parameters() if decayed(n, p)]
    rest = [p for n, p in model.named_parameters() if not decayed(n, p)]
    return [{"params": mats, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def supervision_step(model, opt, sched, ema, x_aug, pad, y, z, target, cfg, threshold):
    """One deep-supervision step = one optimizer step; returns detached (y, z) and the step's metrics."""
    y, z, pred, halt_logit = model.deep_recursion(x_aug, y, z, pad)
    mse = F.mse_loss(pred, target)
    h = halt_loss(halt_logit, pred, target, "bce" if cfg.bce_halt_loss else "mse", threshold, cfg.detach_halt_target)
    loss = mse + cfg.halt_loss_weight * h
    if not torch.isfinite(loss):
        raise NonFiniteLossError("non-finite phase-2 loss; best.pt from the last good epoch is kept")
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    sched.step()
    if ema is not None:
        ema.update(model)
    cos = F.cosine_similarity(pred.detach(), target, dim=-1)
    return y.detach(), z.detach(), {"loss": loss.item(), "mse": mse.item(), "halt_loss": h.item(),
                                    "cosine_similarity": cos.mean().item(),
                                    "avg_halt_prob": torch.sigmoid(halt_logit).mean().item()}


@torch.no_grad()
def predict(model, xs: list[torch.Tensor], n_sup: int, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    outs = [model.predict(*pad_collate(xs[s: s + batch_size]), n_sup) for s in range(0, len(xs), batch_size)]
    return torch.cat(outs)


def train_trm(cfg: Phase2Config, train_x, train_y, held_x, held_y, out_dir: Path, log=None) -> dict:
    """Train; evaluate each epoch on the held-out split (EMA weights); keep only best.pt."""
    seed_everything(cfg.seed)
    model = build_trm(cfg, train_y.shape[-1])
    if cfg.standardize_targets:
        model.set_statistics(train_x, train_y)
    target_y = model.standardize(train_y)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.decay_norms), lr=cfg.learning_rate,
                            betas=(0.9, 0.95))
    n_batches = math.ceil(len(train_x) / cfg.batch_size)
    sched = warmup_cosine(opt, n_batches * cfg.n_supervision_steps * cfg.num_epochs, cfg.warmup_ratio)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup) if cfg.use_ema else None
    g = torch.Generator().manual_seed(cfg.seed)
    threshold, best, run, start = cfg.halt_threshold, {"loss": math.inf}, RunDir(out_dir), 0
    if cfg.resume and (out_dir / "last.pt").exists():
        start, best, threshold = _load_last(out_dir / "last.pt", cfg, model, opt, sched, ema, g)
    for epoch in tqdm(range(start, cfg.num_epochs), desc="phase-2 epochs", leave=False):
        model.train()
        perm, rows = torch.randperm(len(train_x), generator=g).tolist(), []
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s: s + cfg.batch_size]
            x_aug, pad, y, z = model.prepare(*pad_collate([train_x[i] for i in idx]))
            for _ in range(cfg.n_supervision_steps):
                y, z, m = supervision_step(model, opt, sched, ema, x_aug, pad, y, z, target_y[idx], cfg, threshold)
                rows.append(m)
                if cfg.step_delay:
                    time.sleep(cfg.step_delay)
        train_avg = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        if cfg.bce_halt_loss and cfg.adaptive_halt_threshold:
            threshold = 0.95 * train_avg["cosine_similarity"]
        evaluated = ema.copy_to(model) if (ema is not None and cfg.eval_with_ema) else model
        held = regression_metrics(predict(evaluated, held_x, cfg.n_supervision_steps), held_y)
        if held["mse"] < best["loss"]:
            best = {"loss": held["mse"], "epoch": epoch, "heldout": held, "train": train_avg}
            atomic_torch_save({"epoch": epoch, "trm_state_dict": evaluated.state_dict(),
                               "raw_state_dict": model.state_dict(), "ema_shadow": ema.shadow if ema else None,
                               "trm_config": asdict(evaluated.cfg), "config": asdict(cfg), "loss": held["mse"],
                               "best_metrics": held, "halt_threshold": threshold}, out_dir / "best.pt")
        row = {**{f"train/{k}": v for k, v in train_avg.items()}, **{f"eval/{k}": v for k, v in held.items()},
               "epoch/best_loss": best["loss"], "epoch/halt_threshold": threshold, "train/lr": sched.get_last_lr()[0]}
        run.log(epoch, **row)
        if log is not None:
            log(row, epoch)
        atomic_torch_save({"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                           "sched": sched.state_dict(), "ema": ema.shadow if ema else None,
                           "ema_updates": ema.num_updates if ema else 0, "perm_rng": g.get_state(),
                           "torch_rng": torch.get_rng_state(), "best": best, "threshold": threshold,
                           "config": _resume_key(cfg)}, out_dir / "last.pt")
    return best


def _resume_key(cfg: Phase2Config) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in ("resume", "use_wandb", "output_dir", "step_delay")}


def _load_last(path: Path, cfg, model, opt, sched, ema, g):
    """Restore everything an epoch boundary needs, so a resumed run equals an uninterrupted one."""
    ck = _check_last(path, cfg)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    if ema is not None:
        ema.shadow, ema.num_updates = ck["ema"], ck.get("ema_updates", 0)
    g.set_state(ck["perm_rng"])
    torch.set_rng_state(ck["torch_rng"])
    return ck["epoch"] + 1, ck["best"], ck["threshold"]


def _check_last(path: Path, cfg) -> dict:
    """The ``--resume`` file, refused (one line naming the differing settings) when made with other settings."""
    from llm_trm.checks import load_torch_file

    ck = load_torch_file(path, "phase-2 resume checkpoint")
    if not isinstance(ck, dict) or "config" not in ck or "model" not in ck:
        raise UserError(f"{path} is not a phase-2 last.pt; use another --output_dir")
    new = _resume_key(cfg)
    diff = sorted(k for k in set(ck["config"]) | set(new) if ck["config"].get(k) != new.get(k))
    if diff:
        raise UserError(f"{path} was written with different settings {diff}; use another --output_dir")
    return ck


def load_trm(path: str | Path) -> SequenceTRM:
    """The evaluation weights (EMA unless disabled at training time) of a phase-2/3 checkpoint."""
    from llm_trm.checks import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"TRM checkpoint {path} not found (run phase 2 first)")
    ck = load_torch_file(path, "TRM checkpoint")
    try:
        model = SequenceTRM(TRMConfig(**ck["trm_config"]))
        model.load_state_dict(ck["trm_state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise UserError(f"{path} is not a phase-2 TRM checkpoint of this version ({type(exc).__name__})") from None
    return model.eval()


def split_indices(data: dict, cfg: Phase2Config) -> tuple[list[int], list[int], list[int]]:
    """(fit, validation, held-out test) pair indices. The datagen's ``split`` (held-out problems disjoint from
    training) is used when present; validation is a seeded slice of the training pairs."""
    n = len(data["hidden_pre"])
    g = torch.Generator().manual_seed(cfg.seed)
    if "split" in data:
        split = data["split"].tolist()
        train = [i for i in range(n) if split[i] == 0]
        test = [i for i in range(n) if split[i] == 1]
    else:
        order = torch.randperm(n, generator=g).tolist()
        train, test = split_heldout(order, cfg.heldout_fraction)
    train = [train[i] for i in torch.randperm(len(train), generator=g).tolist()]
    fit, val = split_heldout(train, cfg.val_fraction)
    if not fit or not val or not test:
        raise UserError(f"{n} pairs are too few for fit / validation / held-out splits")
    return fit, val, test


def run(cfg: Phase2Config, lm_head_w: torch.Tensor | None = None) -> dict:
    from llm_trm.checks import check_output_path
    from llm_trm.phase2_eval import baseline_predictions, per_example, point_metrics
    from shared_utils.runs import atomic_write_json

    out = check_output_path(cfg.output_dir, "--output_dir")
    data = load_pairs(cfg.data_path)
    hit = data.get("target_hit_rate")
    if hit is not None and hit < cfg.min_target_hit_rate:
        raise UserError(f"{cfg.data_path}: the target state predicts the answer's first token in only {hit:.1%} of "
                        f"pairs (< {cfg.min_target_hit_rate:.0%}); regenerate with phase2_datagen --target answer")
    if cfg.resume and (out / "last.pt").exists():
        _check_last(out / "last.pt", cfg)  # refuse before anything in the folder is overwritten
    comp = load_compressor(cfg.compressor_checkpoint)
    fit, val, test = split_indices(data, cfg)
    RunDir(out).write_config(asdict(cfg))
    if cfg.refit_compressor == "svd":  # a stage 1b on the phase-2 training states (fit + validation pairs only)
        from llm_trm.phase1 import svd_init_

        train = fit + val
        svd_init_(comp, torch.cat([data["hidden_pre"][i].float() for i in train] + [data["hidden_post"][train].float()]))
        atomic_torch_save({"compressor": comp.state_dict(), "source": "svd of the phase-2 training states",
                           "d_compressed": comp.d_compressed}, out / "compressor.pt")
    xs, ys = compress_pairs(data, comp)
    RunDir(out).write_meta(seed=cfg.seed, n_pairs=len(xs))
    from llm_trm.llm import Tracker

    tracker = Tracker.create(cfg.use_wandb, cfg.wandb_project, f"phase2_seq_d{comp.d_compressed}", asdict(cfg))
    sel = lambda idx: ([xs[i] for i in idx], ys[idx])  # noqa: E731
    (fx, fy), (vx, vy), (hx, hy) = sel(fit), sel(val), sel(test)
    try:
        best = train_trm(cfg, fx, fy, vx, vy, out, log=lambda row, ep: tracker.log(row, ep))
    finally:
        tracker.finish()
    trm = load_trm(out / "best.pt")
    n_trm = sum(p.numel() for p in trm.parameters())
    preds, info = baseline_predictions(fx, fy, vx, vy, hx, n_trm, seed=cfg.seed)
    preds = {"mean_target": preds["mean_target"], "last_context_state": preds["last_context_state"],
             "ridge_last_state": preds["ridge_last_state"], "ridge_all_states": preds["ridge_all_states"],
             "mlp": preds["mlp"], "trm": predict(trm, hx, cfg.n_supervision_steps), "oracle": hy.clone()}
    if lm_head_w is None:
        lm_head_w = _lm_head(data["model_name"])
    answer_ids = data.get("answer_token_id", data["post_token_id"])[test]
    mu = torch.cat([fy, vy]).mean(0)
    examples = {name: per_example(p, hy, mu, answer_tokens(p, comp, lm_head_w) == answer_ids)
                for name, p in preds.items()}
    if "base_token_id" in data:
        examples["base_answer_only"] = {"answer_correct": (data["base_token_id"][test] == answer_ids).float().numpy()}
    report = {name: point_metrics(ex) if "sq_err" in ex else {"answer_accuracy": float(ex["answer_correct"].mean())}
              for name, ex in examples.items()}
    report["_meta"] = {"n_fit": len(fit), "n_val": len(val), "n_heldout": len(test), "best_epoch": best["epoch"],
                       "d_compressed": comp.d_compressed, "trm_params": n_trm, "baselines": info,
                       "target": data.get("target", "think_end"), "target_hit_rate": hit,
                       "target_rms": ys.pow(2).mean().sqrt().item(),
                       "mean_energy_fraction": (mu.pow(2).sum() / ys.pow(2).sum(-1).mean()).item()}
    atomic_write_json(out / "eval.json", report)
    torch.save({k: {m: torch.as_tensor(v) for m, v in ex.items()} for k, ex in examples.items()},
               out / "eval_examples.pt")
    for name, m in report.items():
        if not name.startswith("_"):
            print(f"[phase2] {name:20s} " + " ".join(f"{k}={v:.4f}" for k, v in m.items()), flush=True)
    return report


@torch.no_grad()
def answer_tokens(pred_c: torch.Tensor, comp, lm_head_w: torch.Tensor) -> torch.Tensor:
    """argmax lm_head(W^T y_hat): the token the prediction would make the LLM emit next."""
    return (comp.decompress(pred_c) @ lm_head_w.T.to(pred_c.dtype)).argmax(-1)


def _mode_rate(ids: torch.Tensor) -> float:
    return (torch.bincount(ids).max() / len(ids)).item() if len(ids) else 0.0


def _lm_head(model_name: str) -> torch.Tensor:
    from shared_utils.models import load_causal_lm

    return load_causal_lm(model_name).get_output_embeddings().weight.detach()


def parse_config(argv=None) -> Phase2Config:
    c = Phase2Config()
    p = argparse.ArgumentParser(prog="phase2_trm", description=__doc__.split("\n")[0])
    for k in ("data_path", "compressor_checkpoint", "output_dir", "wandb_project"):
        p.add_argument(f"--{k}", default=getattr(c, k))
    for k in ("n_layers", "n_heads", "n_latent_steps", "n_deep_recursions", "n_supervision_steps", "batch_size",
              "num_epochs", "seed", "max_positions"):
        p.add_argument(f"--{k}", type=int, default=getattr(c, k))
    for k in ("dropout", "learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio", "ema_decay",
              "halt_loss_weight", "halt_threshold", "heldout_fraction"):
        p.add_argument(f"--{k}", type=float, default=getattr(c, k))
    p.add_argument("--no_ema", dest="use_ema", action="store_false")
    p.add_argument("--bce_halt_loss", action="store_true")
    p.add_argument("--no_adaptive_halt_threshold", dest="adaptive_halt_threshold", action="store_false")
    p.add_argument("--no_detach_halt_target", dest="detach_halt_target", action="store_false")
    p.add_argument("--no_eval_with_ema", dest="eval_with_ema", action="store_false")
    p.add_argument("--use_wandb", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from {output_dir}/last.pt")
    p.add_argument("--no_standardize_targets", dest="standardize_targets", action="store_false")
    p.add_argument("--no_output_head", dest="output_head", action="store_false")
    p.add_argument("--decay_norms", action="store_true")
    p.add_argument("--no_ema_warmup", dest="ema_warmup", action="store_false")
    for k in ("val_fraction", "min_target_hit_rate"):
        p.add_argument(f"--{k}", type=float, default=getattr(c, k))
    p.add_argument("--step_delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--refit_compressor", choices=["none", "svd"], default=c.refit_compressor,
                   help="svd: refit W on the phase-2 training states (saved as {output_dir}/compressor.pt)")
    cfg = Phase2Config(**vars(p.parse_args(argv)))
    require_positive(cfg, ("n_layers", "n_heads", "n_latent_steps", "n_deep_recursions", "n_supervision_steps",
                           "batch_size", "num_epochs"), ("learning_rate",))
    return cfg


main = cli_entry(parse_config, run)


if __name__ == "__main__":
    main()
