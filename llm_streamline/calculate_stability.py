"""Stability between predictions before and after pruning, as in the original:

    python calculate_stability.py ORIG_PRED_DIR PRUNED_PRED_DIR [--reference_compat] [--json out.json]

Each directory is an OpenCompass ``outputs/default/<time>/predictions/<model>`` folder (PPL-mode JSON per
dataset) or a folder of lm-eval ``samples_<task>*.jsonl`` files (e.g. runs/table/eval/<row>).
``--reference_compat`` reproduces the released script's sum of the first M weights (spec bug 1).
"""

import argparse
from pathlib import Path

from llm_streamline.stability import directory_stability
from shared_utils.errors import UserError, cli_main
from shared_utils.runs import atomic_write_json


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(description="stability of a pruned model's predictions (LLM-Streamline)")
    p.add_argument("orig_dir")
    p.add_argument("pruned_dir")
    p.add_argument("--reference_compat", action="store_true", help="the original code's first-M-weights sum")
    p.add_argument("--json", default=None, help="also write the values to this JSON file")
    a = p.parse_args(argv)
    if a.json and (Path(a.json).is_dir() or not Path(a.json).parent.is_dir()):
        raise UserError(f"--json {a.json} is a directory or its folder does not exist")
    result = directory_stability(a.orig_dir, a.pruned_dir, a.reference_compat)
    for name, value in result.items():
        print(f"{name}: {value:.4f}")
    if a.json:
        atomic_write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
