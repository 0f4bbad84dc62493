"""Data parallel training (issue 17): `torchrun --nproc_per_node 2` (gloo, CPU) with per-rank batch B/2 gives the
same weights as one process with batch B (<= 1e-5), and the ranks agree (train() checks it at the end).

python -m pytest tests/test_ddp.py -q
"""

import subprocess
import sys
from pathlib import Path

import torch
from conftest import FIXTURES, PROJECT

from hier_bd3lm.config import parse_overrides
from hier_bd3lm.train import train

ARGS = ["model=micro", "data.tokenizer=char", f"data.train_path={FIXTURES / 'hier_gsm8k_train.json'}",
        f"data.test_path={FIXTURES / 'hier_gsm8k_test.json'}", "training.hierarchical.question_len=16",
        "training.hierarchical.plan_len=16", "training.hierarchical.exec_len=32", "training.hierarchical.total_len=64",
        "block_size=8", "loader.eval_batch_size=4", "data.limit_valid=4", "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1", "trainer.val_check_interval=2", "trainer.max_steps=4",
        "lr_scheduler.num_warmup_steps=2", "model.dropout=0.0", "trainer.device=cpu"]


def test_two_ranks_with_half_batches_equal_one_process(tmp_path):
    one = train(parse_overrides(ARGS + ["loader.batch_size=4", f"checkpointing.save_dir={tmp_path / 'one'}"]))
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "main.py", "mode=train", *ARGS,
                        "loader.batch_size=2", f"checkpointing.save_dir={tmp_path / 'two'}"],
                       cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(one["checkpoint"], weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["step"] == b["step"] == 4 and isinstance(b["torch_rng"], list) and len(b["torch_rng"]) == 2
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-5, msg=k)
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"]):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    metrics = (tmp_path / "two" / "metrics.jsonl").read_text()
    assert '"world_size": 2' in (tmp_path / "two" / "meta.json").read_text() and metrics  # rank 0 wrote the run dir
