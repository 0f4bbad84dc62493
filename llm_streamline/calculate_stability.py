"""Stability between predictions before and after pruning, as in the original:

    python calculate_stability.py ORIG_PRED_DIR PRUNED_PRED_DIR [--reference_compat] [--json out.json]

Each directory is an OpenCompass ``outputs/default/<time>/predictions/<model>`` folder (PPL-mode JSON per
dataset) or a folder of lm-eval ``samples_<task>*.jsonl`` files (e.g. runs/table/eval/<row>).
``--reference_compat`` reproduces the released script's sum of the first M weights (spec bug 1).
"""

import argparse
import json

from llm_streamline.stability import directory_stability
from shared_utils.errors import cli_main


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(description="stability of a pruned model's predictions (LLM-Streamline)")
    p.add_argument("orig_dir")
    p.add_argument("pruned_dir")
    p.add_argument("--reference_compat", action="store_true", help="the original code's first-M-weights sum")
    p.add_argument("--json", default=None, help="also write the values to this JSON file")
    a = p.parse_args(argv)
    result = directory_stability(a.orig_dir, a.pruned_dir, a.reference_compat)
    for name, value in result.items():
        print(f"{name}: {value:.4f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
