"""The real entry point in a subprocess on the tiny config; bad input exits 2 with one line.

    python -m pytest tests/test_smoke.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_superrelora.py"


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_train_script_end_to_end_with_trainer(tmp_path):
    out = tmp_path / "run"
    proc = run("--config", "training_configs/tiny_cpu.yaml", "--use_trainer", "--dataset_name",
               "tests/data/tiny_corpus.txt", "--output_dir", str(out), "--max_steps", "4", "--legacy_eval")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["merges"] == 2 and summary["steps"] == 4 and summary["path"] == "trainer"
    assert 0 < summary["eval_loss"] < 10 and "eval_legacy_loss" in summary
    for name in ("config.json", "meta.json", "metrics.jsonl", "loss_log.csv", "merges.json"):
        assert (out / name).is_file(), name
    assert (out / "final_model" / "superrelora_state.safetensors").is_file()
    assert (out / "merged_model" / "config.json").is_file()
    assert (out / "loss_log.csv").read_text().startswith("step,epoch,loss\n")


def test_bad_flag_value_is_one_line_exit_2(tmp_path):
    proc = run("--config", "training_configs/tiny_cpu.yaml", "--merge_alpha", "2", "--output_dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: merge_alpha")


def test_offline_hub_model_fails_at_once(tmp_path):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", "training_configs/tiny_cpu.yaml",
                           "--dataset_name", "wikitext", "--output_dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "error:" in proc.stderr and "offline" in proc.stderr.lower()
