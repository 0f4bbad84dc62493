"""Two CPU processes (gloo, torchrun) with per-rank batch B/2 give the same weights as one process with batch B.

    python -m pytest tests/test_multiprocess.py -q -m slow
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_streamline import llm_train, mse_train

ROOT = Path(__file__).resolve().parents[1]


def flags(model, data, out, batch):
    return ["--model_name", str(model), "--data_path", str(data), "--seq_len", "32", "--train_num_data", "16",
            "--cosine_num_data", "4", "--num_test_blocks", "4", "--batch_size", str(batch),
            "--gradient_accumulation_step", "1", "--layer_intervals", "2", "--output_dir", str(out), "--device", "cpu",
            "--num_threads", "1", "--epoches", "1", "--lr", "1e-3"]


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(out.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["llm", "mse"])
def test_two_ranks_equal_one_rank(entry, tiny_dir, corpus, tmp_path):
    module, script = (llm_train, "llmloss_entry.py") if entry == "llm" else (mse_train, "mseloss_entry.py")
    module.run(flags(tiny_dir, corpus, tmp_path / "one", 4))
    port = "29517" if entry == "llm" else "29519"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": port}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           port, str(ROOT / script), *flags(tiny_dir, corpus, tmp_path / "two", 2)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("saved ") == 1  # rank 0 writes, once
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0, msg=name)
    ha = json.loads((tmp_path / "one" / "streamline.json").read_text())["history"]
    hb = json.loads((tmp_path / "two" / "streamline.json").read_text())["history"]
    val = "val_loss" if entry == "llm" else "val_mse"
    assert ha["lr"] == pytest.approx(hb["lr"]) and ha[val] == pytest.approx(hb[val], abs=1e-5)
