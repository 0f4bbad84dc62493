"""Evaluate a trained run (adapter + merge-modified base, or its merged export) or a base model.

Replaces the original eval_base_model.py / eval_superrelora.py with one correct protocol (spec 3.3); --legacy_eval
adds the original's buggy numbers next to the correct ones.

    python scripts/evaluate.py --run_dir runs/smollm2_cpu [--merged] [--legacy_eval]
    python scripts/evaluate.py --model_name smollm2-135m --dataset_name ../../shared/data/wikitext2/raw/wiki.test.raw
"""

import argparse
from pathlib import Path

from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json
from superrelora.config import config_from_dict, load_config
from superrelora.preflight import check_dataset, check_model_name, read_json


@cli_main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run_dir", help="a training output dir (reads its config.json)")
    p.add_argument("--model_name", help="evaluate this base model instead (Hub id, dir, smollm2-135m)")
    p.add_argument("--dataset_name", default=None)
    p.add_argument("--num_eval_samples", type=int, default=None)
    p.add_argument("--eval_max_length", type=int, default=None)
    p.add_argument("--eval_batch_size", type=int, default=None)
    p.add_argument("--merged", action="store_true", help="evaluate <run_dir>/merged_model (merge_and_unload export)")
    p.add_argument("--legacy_eval", action="store_true", help="also compute the original's buggy numbers")
    a = p.parse_args()
    if bool(a.run_dir) == bool(a.model_name):
        raise UserError("give exactly one of --run_dir or --model_name")
    over = {k: v for k, v in {"dataset_name": a.dataset_name, "num_eval_samples": a.num_eval_samples,
                              "eval_max_length": a.eval_max_length, "eval_batch_size": a.eval_batch_size}.items()
            if v is not None}
    if a.run_dir:
        cfg_path = Path(a.run_dir) / "config.json"
        if not cfg_path.is_file():
            raise UserError(f"{a.run_dir}: no config.json (not a training run directory)")
        cfg = config_from_dict({**read_json(cfg_path, "run config"), **over})
        check_dataset(cfg)
        if not (Path(a.run_dir) / ("merged_model" if a.merged else "final_model")).is_dir():
            raise UserError(f"{a.run_dir}: no {'merged_model' if a.merged else 'final_model'}/ (training did not "
                            "finish, or it ran with --no_export)")
        import torch

        from superrelora.checkpoint import load_final_model

        if a.merged:
            from transformers import AutoModelForCausalLM

            if not (Path(a.run_dir) / "merged_model").is_dir():
                raise UserError(f"{a.run_dir}: no merged_model/ (trained with --no_export?)")
            model = AutoModelForCausalLM.from_pretrained(Path(a.run_dir) / "merged_model", dtype=torch.float32)
        else:
            model = load_final_model(cfg.model_name, Path(a.run_dir))
        out_path = Path(a.run_dir) / ("eval_results_merged.json" if a.merged else "eval_results.json")
    else:
        cfg = load_config(None, {"model_name": a.model_name, **over})
        check_model_name(cfg.model_name)
        check_dataset(cfg)
        from superrelora.model import load_base_model

        model = load_base_model(cfg.model_name)
        out_path = Path("runs") / "eval_base.json"
    from superrelora.data import load_text_rows
    from superrelora.evaluate import evaluate_text
    from superrelora.train import get_tokenizer

    rows = load_text_rows(cfg.dataset_name, "validation", cfg.dataset_config, cfg.num_eval_samples)
    res = evaluate_text(model.eval(), get_tokenizer(cfg), rows[: cfg.num_eval_samples], cfg.eval_max_length,
                        cfg.eval_batch_size, stream=True, legacy=a.legacy_eval)
    res["rows"] = min(len(rows), cfg.num_eval_samples)
    atomic_write_json(out_path, res)
    print(f"Accuracy {res['accuracy']:.4f} | Perplexity {res['perplexity']:.2f} | Final Loss {res['loss']:.4f}"
          f"  ({res['n_tokens']} tokens) -> {out_path}")


if __name__ == "__main__":
    main()
