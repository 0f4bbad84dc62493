"""`main.py` modes: train, ppl_eval, sample_eval (results printed as JSON and written to eval.output_path).

python main.py mode=sample_eval eval.checkpoint_path=outputs/run/checkpoints/last.ckpt
"""

from __future__ import annotations

import json

from hier_bd3lm.config import Config, parse_overrides
from shared_utils.models import pick_device
from shared_utils.runs import atomic_write_json


def run(args: list[str]) -> dict:
    cfg = parse_overrides(args)
    if cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)
    if cfg.mode == "train":
        from hier_bd3lm.train import train

        out = train(cfg)
    else:
        out = evaluate_mode(cfg)
    if cfg.eval.output_path:
        atomic_write_json(cfg.eval.output_path, out)
    printable = {k: v for k, v in out.items() if k != "samples"}
    print(json.dumps(printable, indent=2))
    return out


def evaluate_mode(cfg: Config) -> dict:
    from hier_bd3lm.evaluate import evaluate_nll, load_checkpoint, sample_eval
    from hier_bd3lm.train import encode, load_records

    device = pick_device(cfg.trainer.device)
    model, tok, train_cfg, state = load_checkpoint(cfg.eval.checkpoint_path, device)
    # data paths may be given at eval time; the layout and model come from the checkpoint
    train_cfg.data.test_path = cfg.data.test_path or train_cfg.data.test_path
    train_cfg.data.limit_valid = cfg.data.limit_valid
    _, valid = load_records(train_cfg)
    enc = encode(train_cfg, valid, tok)
    if cfg.mode == "ppl_eval":
        res = evaluate_nll(model, enc, cfg.loader.eval_batch_size, cfg.eval.mc_samples, cfg.seed, device)
    else:
        s = cfg.sampling
        res = sample_eval(model, enc, tok, cfg.loader.eval_batch_size, s.num_sample_batches, s.nucleus_p, s.kv_cache,
                          s.sampler, cfg.algo.T, s.hierarchical_mode, cfg.seed, device)
    return {"mode": cfg.mode, "checkpoint": cfg.eval.checkpoint_path, "step": state["step"],
            "algo": train_cfg.algo.name, "hierarchical": train_cfg.training.hierarchical.enabled, **res}
