"""python -m pytest tests/test_runs.py"""

import json
import random

import numpy as np
import pytest
import torch

from shared_utils.runs import (
    RunDir,
    atomic_dir,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    plot_loss_curve,
    read_metrics,
    seed_everything,
)


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_reproduces_all_generators():
    seed_everything(7)
    a = draw()
    seed_everything(7)
    assert draw() == a
    seed_everything(7, rank=1)
    assert draw() != a


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"w": Boom()}, path)
    assert torch.equal(torch.load(path)["w"], torch.ones(2))
    assert len(list(tmp_path.iterdir())) == 1


def test_atomic_dir_replaces_whole_directory_or_nothing(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists(), "nothing is visible before the block finishes"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"], "a failed write keeps the old directory"
    with atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "no temp directory left behind"


def test_run_dir_records_config_meta_metrics(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"lr": 1e-3, "path": tmp_path})
    run.write_meta(seed=3, note="x")
    run.log(1, loss=2.5)
    run.log(2, loss=torch.tensor(1.5))
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["note"] == "x"
    assert "torch" in meta["packages"] and "git_sha" in meta and "cpu_count" in meta["device"]
    assert json.loads((run.path / "config.json").read_text())["lr"] == 1e-3
    assert run.read_metrics() == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.5}]


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    atomic_write_text(path, '{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 1.0}]


def test_plot_loss_curve_writes_png(tmp_path):
    run = RunDir(tmp_path / "a")
    for step in range(5):
        run.log(step, loss=1.0 / (step + 1), eval_loss=2.0 / (step + 1))
    out = plot_loss_curve([("a", run.metrics_path)], tmp_path / "plots" / "loss.png", keys=("loss", "eval_loss"))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_set_threads():
    from shared_utils.runs import set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_check_output_path(tmp_path):
    from shared_utils.errors import UserError
    from shared_utils.runs import check_output_path

    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UserError, match="--out .*afile is an existing file"):
        check_output_path(f, "--out")
    with pytest.raises(UserError, match="is a file, so nothing can be written below it"):
        check_output_path(f / "sub" / "run", "--output_dir")
    with pytest.raises(UserError, match="existing directory, not a file"):
        check_output_path(tmp_path, "--plot", kind="file")
    assert check_output_path(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert check_output_path(f, kind="file") == f
    with pytest.raises(UserError, match="run directory"):
        RunDir(f)


def test_check_resume_config_names_keys_and_values():
    from shared_utils.errors import UserError
    from shared_utils.runs import check_resume_config

    saved = {"lr": 1e-3, "merge": {"every": 2, "alpha": 0.1}, "layers": [1, 2], "seed": 0}
    check_resume_config(saved, {"lr": 1e-3, "merge": {"every": 2, "alpha": 0.1}, "layers": (1, 2), "seed": 0})
    check_resume_config({"bridges": [[1, 0], [3, 2]]}, {"bridges": [(1, 0), (3, 2)]})  # nested tuples as saved
    with pytest.raises(UserError) as e:
        check_resume_config(saved, {**saved, "merge": {"every": 3, "alpha": 0.1}, "seed": 1},
                            keys=["merge.every", "merge.alpha", "seed", "lr"])
    msg = str(e.value)
    assert "merge.every: checkpoint has 2, this run has 3" in msg and "seed: checkpoint has 0, this run has 1" in msg
    assert "alpha" not in msg and "\n" not in msg
    with pytest.raises(UserError, match="extra: checkpoint has <absent>, this run has 5"):
        check_resume_config(saved, {**saved, "extra": 5})


def test_load_json_and_torch_files_fail_in_one_line(tmp_path):
    from shared_utils.errors import UserError
    from shared_utils.runs import atomic_torch_save, load_json_file, load_torch_file

    with pytest.raises(UserError, match="does not exist"):
        load_json_file(tmp_path / "none.json", "config")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,,}')
    with pytest.raises(UserError, match=r"config .*bad.json is not valid JSON \(line 1"):
        load_json_file(bad, "config")
    good = tmp_path / "ok.pt"
    atomic_torch_save({"w": torch.ones(3)}, good)
    assert torch.equal(load_torch_file(good)["w"], torch.ones(3))
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:50])
    with pytest.raises(UserError, match="checkpoint .*trunc.pt is corrupt or truncated"):
        load_torch_file(trunc)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="corrupt"):
        load_torch_file(junk, "weights")
    with pytest.raises(UserError, match="is a directory"):
        load_torch_file(tmp_path)


def test_rundir_fresh_truncates_metrics(tmp_path):
    r = RunDir(tmp_path / "run")
    r.log(1, loss=1.0)
    assert len(RunDir(tmp_path / "run").read_metrics()) == 1  # resume keeps
    r2 = RunDir(tmp_path / "run", fresh=True)
    r2.log(1, loss=2.0)
    assert [m["loss"] for m in r2.read_metrics()] == [2.0]
