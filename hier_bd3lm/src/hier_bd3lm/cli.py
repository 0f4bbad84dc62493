"""`main.py` modes: train, ppl_eval, sample_eval (results printed as JSON and written to eval.output_path).

python main.py mode=sample_eval eval.checkpoint_path=outputs/run/checkpoints/last.ckpt
"""

from __future__ import annotations

import json

from hier_bd3lm.config import Config, parse_overrides, to_dict
from shared_utils.errors import UserError
from shared_utils.models import pick_device
from shared_utils.runs import atomic_write_json


def run(args: list[str]) -> dict:
    cfg = parse_overrides(args)
    preflight(cfg)
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


def preflight(cfg: Config) -> None:
    """Checks that need neither torch nor a model, so bad input fails in about a second with one line."""
    from hier_bd3lm.guards import (
        check_checkpoint_file,
        check_output_dir,
        check_output_path,
        check_resume_config,
        load_json_file,
    )
    from hier_bd3lm.records import read_records

    if cfg.eval.output_path and check_output_path(cfg.eval.output_path, "eval.output_path").is_dir():
        raise UserError(f"eval.output_path {cfg.eval.output_path} is a directory, not a file")
    if cfg.mode != "train":
        if cfg.eval.checkpoint_path is None:
            raise UserError("eval.checkpoint_path is required for this mode")
        check_checkpoint_file(cfg.eval.checkpoint_path)
        if cfg.data.test_path:
            read_records(cfg.data.test_path)
        return
    save = check_output_dir(cfg.checkpointing.save_dir, "checkpointing.save_dir")
    ckpt = save / "checkpoints" / "last.ckpt"
    if cfg.checkpointing.resume_from_ckpt and ckpt.exists():
        sidecar = ckpt.with_suffix(".json")
        if sidecar.is_file():
            check_resume_config(load_json_file(sidecar, "checkpoint config").get("config", {}), to_dict(cfg),
                                where=str(ckpt))
        check_checkpoint_file(ckpt)
    for path in (cfg.data.train_path, cfg.data.test_path):
        if path:
            read_records(path)
    if cfg.training.from_pretrained:
        check_checkpoint_file(cfg.training.from_pretrained, "training.from_pretrained checkpoint")
    name = cfg.data.tokenizer
    if name != "char":
        from shared_utils.models import is_embedded, resolve_model_path

        if not is_embedded(name):
            resolve_model_path(name, flag="data.tokenizer=")


def evaluate_mode(cfg: Config) -> dict:
    from hier_bd3lm.evaluate import evaluate_nll, load_checkpoint, sample_eval
    from hier_bd3lm.pipeline import encode, load_records

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
