"""Two CPU processes (gloo, the torchrun environment) with per-rank batch B/2 == one process with batch B: same
final weights (<= 1e-5) with partial merges at the same updates, identical weights on both ranks, and only
rank 0 writes the run directory.

    python -m pytest tests/test_ddp.py -q
    # the real launch: torchrun --nproc_per_node 2 scripts/train_superrelora.py --config training_configs/tiny_cpu.yaml
"""

import json
import multiprocessing as mp
import os
import socket

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, cfg, out_file: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), TQDM_DISABLE="1")
    torch.set_num_threads(1)
    from superrelora.train import run_training

    summary = run_training(cfg, export=False, evaluate=False)
    model = summary.pop("_setup").model
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, out_file)
    import torch.distributed as dist

    dist.destroy_process_group()
    os._exit(0)


@pytest.mark.parametrize("method, use_trainer", [
    ("superrelora", False),
    pytest.param("relora", False, marks=pytest.mark.slow),  # ~30 s each on a loaded 2-core machine
    pytest.param("superrelora", True, marks=pytest.mark.slow),
], ids=["manual-superrelora", "manual-relora", "trainer-superrelora"])
def test_two_ranks_half_batch_equal_one_rank_full_batch(tmp_path, method, use_trainer):
    from superrelora.train import run_training

    kw = dict(method=method, merge_every=2, max_steps=6, save_steps=3, logging_steps=0, use_trainer=use_trainer,
              **({"scheduler.type": "jagged_cosine"} if method == "relora" else {}))
    one = run_training(tiny_config(tmp_path, output_dir=str(tmp_path / "one"), batch_size=4, **kw),
                       export=False, evaluate=False)
    ref = {n: p.detach().clone() for n, p in one.pop("_setup").model.named_parameters()}
    port = _free_port()
    cfg = tiny_config(tmp_path, output_dir=str(tmp_path / "two"), batch_size=2, **kw)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_rank_main, args=(r, port, cfg, str(tmp_path / f"rank{r}.pt"))) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name, ref_w in ref.items():
        assert torch.equal(w0[name], w1[name]), f"ranks differ: {name}"
        torch.testing.assert_close(w0[name], ref_w, atol=1e-5, rtol=0, msg=name)
    merges = json.loads((tmp_path / "two" / "merges.json").read_text())
    assert [e["step"] for e in merges] == [2, 4, 6]
    rows = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))  # written once (rank 0), not once per rank
    assert (tmp_path / "two" / "checkpoint-3" / "superrelora_run.json").is_file()
    saved = load_file(str(tmp_path / "two" / "final_model" / "superrelora_state.safetensors"))
    for name, t in saved.items():
        torch.testing.assert_close(t, ref[name], atol=1e-5, rtol=0, msg=name)
    single = [json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert max(abs(a["loss"] - b) for a, b in zip(rows, single)) < 1e-5  # the logged loss is the global one
