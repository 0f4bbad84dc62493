"""kill -9 at a random update after the first checkpoint, resume from `latest`: the same final weights, merge log
and eval loss as an uninterrupted run (manual loop and the HF Trainer path).

The killed run is a forked child of the test process (torch is already imported there, so no 20-30 s interpreter
start on a loaded 2-core machine); it is killed with SIGKILL while training, with no chance to clean up.

    python -m pytest tests/test_kill_resume.py -q
"""

import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

STEPS = 16


def cfg(tmp_path, out: Path, use_trainer: bool, **kw):
    return tiny_config(tmp_path, output_dir=str(out), max_steps=STEPS, save_steps=1, merge_every=3,
                       logging_steps=0, use_trainer=use_trainer, **kw)


def _train_child(config):
    from superrelora.train import run_training

    torch.set_num_threads(1)
    run_training(config, export=False)
    os._exit(0)


def final_state(out: Path) -> dict:
    return load_file(str(out / "final_model" / "superrelora_state.safetensors"))


@pytest.mark.parametrize("use_trainer", [False, True], ids=["manual", "trainer"])
def test_kill9_then_resume_equals_uninterrupted(tmp_path, use_trainer):
    from superrelora.train import run_training

    os.environ["TQDM_DISABLE"] = "1"
    ref, run = tmp_path / "ref", tmp_path / "run"
    sa = run_training(cfg(tmp_path, ref, use_trainer), export=False)
    sa.pop("_setup")
    kill_at = random.Random().randint(2, STEPS - 4)  # a random update after at least one checkpoint
    child = mp.get_context("fork").Process(target=_train_child, args=(cfg(tmp_path, run, use_trainer),))
    child.start()
    deadline = time.time() + 120
    while not (run / f"checkpoint-{kill_at}").exists() and child.is_alive() and time.time() < deadline:
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL, f"run ended before the kill at update {kill_at}"
    assert not (run / "final_model").exists()
    sb = run_training(cfg(tmp_path, run, use_trainer, resume_from_checkpoint="latest"), export=False)
    sb.pop("_setup")
    a, b = final_state(ref), final_state(run)
    assert a.keys() == b.keys()
    for name in a:  # adapters and the merge-modified base weights
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)
    assert abs(sa["eval_loss"] - sb["eval_loss"]) < 1e-6
    assert json.loads((run / "merges.json").read_text()) == json.loads((ref / "merges.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, STEPS + 1))  # none lost or duplicated
