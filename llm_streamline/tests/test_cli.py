"""Entry points: bad input is one clear line (exit 2); one real end-to-end run in a subprocess.

    python -m pytest tests/test_cli.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_streamline import mse_train
from shared_utils.errors import cli_main

ROOT = Path(__file__).resolve().parents[1]


def small_flags(model, data, out):
    return ["--model_name", str(model), "--data_path", str(data), "--seq_len", "32", "--train_num_data", "16",
            "--cosine_num_data", "4", "--num_test_blocks", "4", "--batch_size", "4", "--gradient_accumulation_step",
            "2", "--layer_intervals", "2", "--output_dir", str(out), "--device", "cpu"]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(mse_train.run)(argv)
    lines = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln.strip()]
    return exc.value.code, lines[-1] if lines else ""


def test_layer_intervals_too_large(tiny_dir, corpus, tmp_path, capsys):
    argv = small_flags(tiny_dir, corpus, tmp_path / "o")
    argv[argv.index("--layer_intervals") + 1] = "6"
    code, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("error: layer_intervals must be in 1..5") and "\n" not in err


def test_missing_data_file(tiny_dir, tmp_path, capsys):
    code, err = run_cli(small_flags(tiny_dir, tmp_path / "nope.txt", tmp_path / "o"), capsys)
    assert code == 2 and "nope.txt does not exist" in err and "\n" not in err


def test_output_dir_not_writable(tiny_dir, corpus, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(small_flags(tiny_dir, corpus, blocker / "sub" / "out"), capsys)
    assert code == 2 and "is not writable" in err and "\n" not in err


def test_unknown_architecture(corpus, tmp_path, capsys):
    from helpers import byte_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=260)).save_pretrained(d)
    byte_tokenizer().save_pretrained(d)
    code, err = run_cli(small_flags(d, corpus, tmp_path / "o"), capsys)
    assert code == 2 and "unsupported architecture 'gpt2'" in err


def test_unknown_flag_and_bad_value(tiny_dir, corpus, tmp_path, capsys):
    code, err = run_cli(small_flags(tiny_dir, corpus, tmp_path / "o") + ["--bogus", "1"], capsys)
    assert code == 2 and "unknown arguments: --bogus 1" in err
    code, err = run_cli(small_flags(tiny_dir, corpus, tmp_path / "o") + ["--hidden_cache", "ram"], capsys)
    assert code == 2 and "--hidden_cache must be one of" in err


def test_hub_default_offline_names_the_alternative(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_cli(["--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "meta-llama/Llama-3.1-8B" in err and "smollm2-135m" in err


def test_mseloss_entry_end_to_end_subprocess(tiny_dir, corpus, tmp_path):
    """The real script: selection printed, a plain HF checkpoint with tokenizer and streamline.json written."""
    out = tmp_path / "pruned"
    proc = subprocess.run([sys.executable, str(ROOT / "mseloss_entry.py"), *small_flags(tiny_dir, corpus, out),
                           "--hidden_cache", "disk", "--hidden_cache_dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best block: hidden_states" in proc.stdout
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    rec = json.loads((out / "streamline.json").read_text())
    assert model.config.num_hidden_layers == 4 == rec["num_layers"] - 2
    assert len(rec["scores"]) == 4 and rec["best_layer"] == max(range(4), key=lambda j: rec["scores"][j])
    assert rec["removed_layers"] == [rec["best_layer"] + 1, rec["best_layer"] + 2]
    assert rec["hidden_cache"] == "disk" and len(rec["history"]["val_mse"]) == 2
    assert torch.isfinite(model(torch.randint(0, 256, (1, 8))).logits).all()
