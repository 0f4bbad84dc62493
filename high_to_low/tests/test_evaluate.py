"""Evaluation: the original's result JSON format, re-runs, greedy EM vs teacher forcing, entry points.

    python -m pytest tests/test_evaluate.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from high_to_low.evaluate import build_parser, evaluate_items, run_evaluation
from high_to_low.get_model import build_model
from high_to_low.reasoning_datasets import generate
from high_to_low.training import build_parser as train_parser
from high_to_low.training import train, train_step
from shared_utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model_name", "tiny", "--tiny_layers", "2", "--dataset_name", "parity", "--seq_len", "6",
        "--batch_size", "8", "--num_train", "32", "--lr", "3e-3", "--warmup_steps", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return train(train_parser().parse_args(TINY + ["--checkpoint_root_folder", str(root), "--max_steps", "4",
                                                   "--save_interval", "2"]))


def eval_args(folder, out, *extra):
    return build_parser(False).parse_args(["--checkpoint_folder", str(folder), "--dataset_name", "parity",
                                           "--result_folder", str(out), "--num_eval", "24", "--batch_size", "8",
                                           "--device", "cpu", *extra])


def test_results_json_format_and_rerun_skips(trained, tmp_path, monkeypatch):
    results = run_evaluation(eval_args(trained, tmp_path), transformer=False)
    path = tmp_path / "tiny_improved_results.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == results and list(on_disk) == ["2", "4"]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in on_disk.values())
    extra = json.loads((tmp_path / "tiny_improved_greedy_em.json").read_text())
    assert set(extra["4"]) == {"greedy_em", "teacher_forced_em", "mean_prob", "n"}
    preds = (tmp_path / "tiny_improved_predictions_4.jsonl").read_text().splitlines()
    assert len(preds) == 24 and {"input", "gold", "prediction", "correct", "answer_prob"} <= set(json.loads(preds[0]))
    import high_to_low.evaluate as ev

    monkeypatch.setattr(ev, "build_model", lambda cfg: pytest.fail("evaluated steps must be skipped"))
    assert run_evaluation(eval_args(trained, tmp_path), transformer=False) == results


def test_wrong_script_or_dataset_is_refused(trained, tmp_path):
    with pytest.raises(UserError, match="evaluation.py"):
        run_evaluation(eval_args(trained, tmp_path), transformer=True)
    bad = eval_args(trained, tmp_path)
    bad.dataset_name = "multi-step-arithmetic"
    with pytest.raises(UserError, match="trained on parity"):
        run_evaluation(bad, transformer=False)


@pytest.mark.parametrize("our_method", [True, False])
def test_generated_greedy_em_equals_teacher_forced_argmax(our_method):
    cfg = dict(model_name="tiny", tiny_layers=2, our_method=our_method, bridges=[(1, 0)], bridge_rank=8,
               lora_rank=8, multiplier=100, group_size=3, full_finetune=True, seed=0, split_batch_into=1,
               batch_size=16)
    model, tok = build_model(cfg)
    model.tokenizer = tok
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for step in range(30):  # learn the answer format, not yet the parity: both hits and misses
        train_step(model, generate("parity", 16, step, seq_len=7), cfg, params, opt, None, torch.device("cpu"))
    model.eval()
    res = evaluate_items(model, tok, generate("parity", 48, 1453, seq_len=7), "parity", 8, "cpu")
    assert 0 < res["greedy_em"] < 1
    assert res["greedy_em"] == res["teacher_forced_em"]


def test_entry_points(tmp_path, capsys):
    """train.py in a subprocess (the real entry point), then both evaluation scripts in-process."""
    import evaluation
    import evaluation_transformer

    ckpt, out = tmp_path / "ckpt", tmp_path / "res"
    cmd = [sys.executable, "train.py", *TINY, "--our_method", "False", "--checkpoint_root_folder", str(ckpt),
           "--max_steps", "1", "--threads", "1"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    folder = ckpt / "transformer_training_checkpoint_test_tiny_parity"
    evaluation_transformer.main(["--checkpoint_folder", str(folder), "--dataset_name", "parity", "--result_folder",
                                 str(out), "--num_eval", "8", "--device", "cpu"])
    assert list(json.loads((out / "tiny_transformer_results.json").read_text())) == ["1"]
    with pytest.raises(SystemExit) as exc:
        evaluation.main(["--checkpoint_folder", str(folder), "--dataset_name", "parity", "--result_folder", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err.startswith("error:") and "evaluation_transformer.py" in err
