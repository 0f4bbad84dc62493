"""End-to-end smoke run on embedded defaults (CPU, offline, ~1-2 minutes): `make smoke`.

    python scripts/smoke.py --out runs/smoke

Trains the real embedded SmolLM2-135M-Instruct with LoRA + 36 bridges (g = 4) for 2 steps on parity
(1..8 bits, batch 4) through train.py, evaluates the checkpoint with evaluation.py (16 test examples:
the original's answer probability and greedy exact match by cached generation), and writes
runs/smoke/summary.json for the workspace demo table.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the root scripts train.py / evaluation.py

import evaluation  # noqa: E402
import train  # noqa: E402

from shared_utils.runs import atomic_write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/smoke")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    train.main(["--our_method", "True", "--model_name", "smollm2-135m", "--dataset_name", "parity",
                "--checkpoint_root_folder", str(out / "checkpoints"), "--batch_size", "4", "--group_size", "4",
                "--split_batch_into", "1", "--save_interval", "1000", "--total_epochs", "1", "--multiplier", "100",
                "--seq_len", "8", "--num_train", str(4 * args.steps), "--rank", "12", "--lr", "1e-4",
                "--warmup_steps", "1", "--device", "cpu", "--threads", "1"])
    folder = out / "checkpoints" / "improved_training_checkpoint_test_smollm2-135m_parity"
    evaluation.main(["--test", "True", "--checkpoint_folder", str(folder), "--dataset_name", "parity",
                     "--batch_size", "8", "--result_folder", str(out / "results"), "--num_eval", "16",
                     "--device", "cpu", "--threads", "1"])
    step = str(args.steps)
    em = json.loads((out / "results" / "smollm2-135m_improved_greedy_em.json").read_text())[step]
    atomic_write_json(out / "summary.json", {
        "what": f"SmolLM2-135M + LoRA + 36 high-to-low bridges (g=4), {step} training steps on parity 1..8 bits, "
                f"eval on 16 test examples (greedy EM {em['greedy_em']:.2f}), {time.time() - t0:.0f} s",
        "metric": "mean answer probability (original's metric)",
        "value": round(em["mean_prob"], 4),
    })


if __name__ == "__main__":
    main()
