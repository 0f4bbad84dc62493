"""make smoke: SuperReLoRA end to end on the embedded SmolLM2-135M-Instruct (CPU, offline, ~1-3 min).

Trains 4 updates with a partial merge every 2 (manual loop), saves adapter + merged base, evaluates, writes
runs/smoke/summary.json = {"what", "metric", "value"} for the workspace demo table.

    python scripts/smoke.py
"""

import json
import os

from shared_utils.errors import cli_main
from shared_utils.runs import atomic_write_json
from superrelora.config import load_config
from superrelora.train import run_training


@cli_main
def main():
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = load_config("training_configs/smoke_cpu.yaml")
    s = run_training(cfg, export=False)  # the merged export is covered by tests (540 MB to write here)
    s.pop("_setup")
    what = (f"SuperReLoRA on SmolLM2-135M: {s['steps']} updates, {s['merges']} exact partial merges "
            f"(max |dlogit| {s['max_logit_change']:.1e}), eval {s['eval_n_tokens']} tokens")
    summary = {"what": what, "metric": "eval_perplexity", "value": round(s["eval_perplexity"], 3)}
    atomic_write_json("runs/smoke/summary.json", summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
