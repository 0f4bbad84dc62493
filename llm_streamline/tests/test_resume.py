"""Kill -9 at a random optimizer step, resume, and end with the same weights as an uninterrupted run (both entries).

    python -m pytest tests/test_resume.py -q

The uninterrupted and the resumed run run in-process; the killed one is a real subprocess of the entry script
(``--save_steps 1``, a short sleep per step from the test hook ``LLM_STREAMLINE_STEP_DELAY`` so that the kill lands
mid-run). Bad checkpoints (missing, truncated, mismatched settings) are one clear error before any model loads.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_streamline import llm_train, mse_train
from llm_streamline.checkpoint import STATE
from shared_utils.errors import cli_main

ROOT = Path(__file__).resolve().parents[1]


def flags(model, data, out, extra=()):
    return ["--model_name", str(model), "--data_path", str(data), "--seq_len", "32", "--train_num_data", "12",
            "--cosine_num_data", "4", "--num_test_blocks", "4", "--batch_size", "2", "--gradient_accumulation_step",
            "2", "--layer_intervals", "2", "--output_dir", str(out), "--device", "cpu", "--num_threads", "1",
            "--epoches", "2", "--lr", "1e-3", *extra]


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(out.glob("*.safetensors"))
    assert files, f"no weights in {out}"
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def kill_at_random_step(script: str, argv: list[str], ckpt: Path, total_steps: int) -> int:
    """Start the entry script, wait for a checkpoint at step >= k (k random), SIGKILL it; returns the step seen."""
    k = random.Random().randint(1, total_steps - 2)
    env = {**os.environ, "LLM_STREAMLINE_STEP_DELAY": "0.15", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, deadline = 0, time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (ckpt / STATE).is_file():
                try:
                    seen = torch.load(ckpt / STATE, map_location="cpu", weights_only=False)["step"]
                except Exception:  # being replaced right now: look again
                    seen = 0
                if seen >= k:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and seen < k:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run (rc {proc.returncode}): {proc.stderr.read()[-2000:]}"
    return seen


@pytest.mark.parametrize("entry", ["mse", "llm"])
def test_kill_9_then_resume_gives_the_same_weights(entry, tiny_dir, corpus, tmp_path):
    module, script = (mse_train, "mseloss_entry.py") if entry == "mse" else (llm_train, "llmloss_entry.py")
    module.run(flags(tiny_dir, corpus, tmp_path / "straight"))
    ckpt = tmp_path / "killed_checkpoint"
    killed = flags(tiny_dir, corpus, tmp_path / "killed", ["--save_steps", "1", "--checkpoint_dir", str(ckpt)])
    total = 2 * (12 // 2) // 2  # epochs * micro-batches / accumulation = optimizer steps
    seen = kill_at_random_step(script, killed, ckpt, total)
    assert 1 <= seen < total and not (tmp_path / "killed").exists()
    module.run(killed + ["--resume_from_checkpoint", str(ckpt)])
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)
    ha = json.loads((tmp_path / "straight" / "streamline.json").read_text())["history"]
    hb = json.loads((tmp_path / "killed" / "streamline.json").read_text())["history"]
    for key in ha:
        assert ha[key] == pytest.approx(hb[key], abs=1e-6), key


def _err(argv, capsys, module=mse_train):
    with pytest.raises(SystemExit) as exc:
        cli_main(module.run)(argv)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return exc.value.code, lines[-1] if lines else ""


def test_bad_checkpoints_are_one_line(tiny_dir, corpus, tmp_path, capsys):
    base = flags(tiny_dir, corpus, tmp_path / "o")
    code, err = _err(base + ["--resume_from_checkpoint", str(tmp_path / "none")], capsys)
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad" / STATE
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 truncated")
    code, err = _err(base + ["--resume_from_checkpoint", str(bad.parent)], capsys)
    assert code == 2 and "corrupt or truncated" in err
    torch.save({"mode": "mseloss", "config": {"lr": 0.5, "seed": 42}}, bad)
    code, err = _err(base + ["--resume_from_checkpoint", str(bad)], capsys)
    assert code == 2 and "lr: checkpoint has 0.5, this run has 0.001" in err
    code, err = _err(base + ["--resume_from_checkpoint", str(bad)], capsys, llm_train)
    assert code == 2 and "mseloss run, not llmloss" in err
