"""Phase-2 predictors and metrics on held-out pairs: what the TRM has to beat, measured on the same examples.

Predictors of the compressed target state y (D'), all fitted on the training pairs only (settings chosen on a
validation split carved from them):
  mean_target          the training-set mean target (the floor of every regression metric)
  last_context_state   the last compressed context state itself
  ridge_last_state     ridge regression from the last context state (+ bias)
  ridge_all_states     ridge from all context states, right-aligned and flattened (+ bias)
  mlp                  a 2-layer MLP on the same flattened context, sized like the TRM
  trm                  the SequenceTRM (EMA weights)
  oracle               the true target itself: its answer accuracy is the ceiling of the decoding path
Per-example metrics (held-out): centred cosine cos(y_hat - mu, y - mu) with mu the training mean target;
answer correctness = argmax lm_head(W^T y_hat) is the answer's first token. Set metrics: R^2 = 1 - SSE / SST
(SST around mu) and relative error ||Y_hat - Y||_F / ||Y||_F, bootstrapped over examples.

    python -m pytest tests/test_phase2.py -q -k "ridge or metrics or mlp"
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def right_aligned(xs: list[torch.Tensor], width: int) -> torch.Tensor:
    """[N, width * D'] : the last ``width`` states of each context, zero-padded on the left, flattened."""
    d = xs[0].shape[-1]
    out = torch.zeros(len(xs), width, d)
    for i, x in enumerate(xs):
        k = min(width, len(x))
        out[i, width - k:] = x[len(x) - k:]
    return out.reshape(len(xs), -1)


def ridge_fit(a: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ridge on standardised features (lam relative to the mean feature energy); returns (mu, sd, W)."""
    mu, sd = a.mean(0), a.std(0).clamp_min(1e-6)
    z = torch.cat([(a - mu) / sd, torch.ones(len(a), 1)], 1).double()
    reg = lam * len(a) * torch.eye(z.shape[1], dtype=z.dtype)
    reg[-1, -1] = 0.0  # no penalty on the bias
    w = torch.linalg.solve(z.T @ z + reg, z.T @ y.double())
    return mu, sd, w


def ridge_predict(model, a: torch.Tensor) -> torch.Tensor:
    mu, sd, w = model
    return (torch.cat([(a - mu) / sd, torch.ones(len(a), 1)], 1).double() @ w).float()


def ridge_select(a_fit, y_fit, a_val, y_val, a_all, y_all):
    """lam from RIDGE_GRID by validation MSE, then refit on fit + val."""
    errs = {lam: F.mse_loss(ridge_predict(ridge_fit(a_fit, y_fit, lam), a_val), y_val).item() for lam in RIDGE_GRID}
    lam = min(errs, key=errs.get)
    return ridge_fit(a_all, y_all, lam), lam


class MLP(torch.nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, d_out))

    def forward(self, x):
        return self.net(x)


def mlp_hidden_for(params: int, d_in: int, d_out: int) -> int:
    """Hidden width giving about ``params`` parameters (d_in*h + h + h*d_out + d_out)."""
    return max(8, int((params - d_out) / (d_in + d_out + 1)))


def train_mlp(a_fit, y_fit, a_val, y_val, hidden: int, epochs: int = 200, lr: float = 1e-3, seed: int = 0,
              batch_size: int = 64, weight_decay: float = 1e-2) -> tuple[MLP, dict]:
    """Adam on standardised inputs/targets; the epoch with the lowest validation MSE is kept."""
    torch.manual_seed(seed)
    mu, sd = a_fit.mean(0), a_fit.std(0).clamp_min(1e-6)
    ym, ys = y_fit.mean(0), y_fit.std(0).clamp_min(1e-6)
    net = MLP(a_fit.shape[1], hidden, y_fit.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    xf, yf = (a_fit - mu) / sd, (y_fit - ym) / ys
    xv = (a_val - mu) / sd
    g = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch = math.inf, None, -1
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(xf), generator=g)
        for s in range(0, len(perm), batch_size):
            i = perm[s: s + batch_size]
            loss = F.mse_loss(net(xf[i]), yf[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = F.mse_loss(net(xv) * ys + ym, y_val).item()
        if v < best:
            best, best_epoch = v, ep
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()

    def predict(a):
        with torch.no_grad():
            return net((a - mu) / sd) * ys + ym

    return predict, {"hidden": hidden, "params": sum(p.numel() for p in net.parameters()), "best_epoch": best_epoch,
                     "val_mse": best}


def per_example(pred: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, answer_ok: torch.Tensor) -> dict:
    """Per-example arrays the table bootstraps over."""
    pc, tc = pred - mu, target - mu
    return {"centred_cosine": F.cosine_similarity(pc, tc, dim=-1).numpy(),
            "sq_err": ((pred - target) ** 2).sum(-1).numpy(), "sq_dev": (tc ** 2).sum(-1).numpy(),
            "sq_norm": (target ** 2).sum(-1).numpy(), "answer_correct": answer_ok.float().numpy()}


def r2_of(sq_err, sq_dev):
    return 1.0 - float(np.sum(sq_err)) / float(np.sum(sq_dev))


def rel_err_of(sq_err, sq_norm):
    return math.sqrt(float(np.sum(sq_err)) / float(np.sum(sq_norm)))


def point_metrics(ex: dict) -> dict:
    return {"centred_cosine": float(np.mean(ex["centred_cosine"])), "r2": r2_of(ex["sq_err"], ex["sq_dev"]),
            "relative_error": rel_err_of(ex["sq_err"], ex["sq_norm"]),
            "answer_accuracy": float(np.mean(ex["answer_correct"]))}


def interval_metrics(ex: dict, n_boot: int = 2000) -> dict:
    """The four metrics with 95% bootstrap intervals over held-out examples (shared_utils.stats)."""
    from shared_utils import stats

    return {"centred_cosine": stats.metric_examples(ex["centred_cosine"], n_boot=n_boot),
            "r2": stats.bootstrap_fn(r2_of, ex["sq_err"], ex["sq_dev"], n_boot=n_boot),
            "relative_error": stats.bootstrap_fn(rel_err_of, ex["sq_err"], ex["sq_norm"], n_boot=n_boot),
            "answer_accuracy": stats.metric_examples(ex["answer_correct"], n_boot=n_boot)}


def paired_r2(ex_a: dict, ex_b: dict, n_boot: int = 2000) -> dict:
    """Paired bootstrap of R^2(a) - R^2(b) on the same held-out examples."""
    from shared_utils import stats

    def diff(ea, eb, dev):
        return r2_of(ea, dev) - r2_of(eb, dev)

    return stats.as_comparison(stats.bootstrap_fn(diff, ex_a["sq_err"], ex_b["sq_err"], ex_a["sq_dev"],
                                                  n_boot=n_boot))


def baseline_predictions(fit_x, fit_y, val_x, val_y, test_x, mlp_params: int, mlp_epochs: int = 200,
                         seed: int = 0) -> tuple[dict, dict]:
    """Predictions on ``test_x`` of every non-TRM predictor, and what was chosen on the validation split."""
    all_x, all_y = fit_x + val_x, torch.cat([fit_y, val_y])
    last = lambda xs: torch.stack([x[-1] for x in xs])  # noqa: E731
    width = max(len(x) for x in all_x)
    flat = lambda xs: right_aligned(xs, width)  # noqa: E731
    preds = {"mean_target": all_y.mean(0, keepdim=True).expand(len(test_x), -1).clone(),
             "last_context_state": last(test_x)}
    info = {}
    m, lam = ridge_select(last(fit_x), fit_y, last(val_x), val_y, last(all_x), all_y)
    preds["ridge_last_state"], info["ridge_last_state"] = ridge_predict(m, last(test_x)), {"lambda": lam}
    m, lam = ridge_select(flat(fit_x), fit_y, flat(val_x), val_y, flat(all_x), all_y)
    preds["ridge_all_states"], info["ridge_all_states"] = ridge_predict(m, flat(test_x)), {"lambda": lam,
                                                                                            "width": width}
    hidden = mlp_hidden_for(mlp_params, flat(fit_x).shape[1], fit_y.shape[1])
    predict, info["mlp"] = train_mlp(flat(fit_x), fit_y, flat(val_x), val_y, hidden, epochs=mlp_epochs, seed=seed)
    preds["mlp"] = predict(flat(test_x))
    return preds, info
