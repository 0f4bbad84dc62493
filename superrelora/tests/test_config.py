"""Config: every shipped YAML loads, numeric strings coerced, CLI overrides YAML, unknown keys and bad values fail.

    python -m pytest tests/test_config.py -q
"""

from pathlib import Path

import pytest

from shared_utils.errors import UserError
from superrelora.cli import parse
from superrelora.config import cli_keys, load_config

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "training_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    cfg = load_config(path)
    assert cfg.lora_r >= 1


def test_original_yaml_strings_coerced_and_all_keys_kept():
    cfg = load_config(ROOT / "training_configs" / "superrelora_160m.yaml")
    assert cfg.learning_rate == 2e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.optimizer.eps == 1e-8
    assert (cfg.scheduler.type, cfg.scheduler.warmup_steps, cfg.scheduler.total_steps) == ("cosine", 100, 1000)
    assert cfg.gradient_accumulation_steps == 4 and cfg.fp16 and cfg.max_length == 512


def test_cli_overrides_yaml_and_readme_flags_accepted():
    cfg, _ = parse(["--config", str(ROOT / "training_configs" / "superrelora_160m.yaml"), "--use_trainer",
                    "--merge_every", "500", "--merge_alpha", "0.1", "--max_steps", "8000", "--batch_size", "64",
                    "--num_epochs", "3", "--logging_steps", "20", "--eval_steps", "1000",
                    "--limit_train_examples", "10", "--use_base_model", "--scheduler.type", "linear",
                    "--target_modules", "q_proj,v_proj", "--learning_rate", "1e-3"])
    assert cfg.use_trainer and cfg.use_base_model and cfg.effective_method == "full"
    assert (cfg.merge_every, cfg.max_steps, cfg.batch_size, cfg.limit_train_examples) == (500, 8000, 64, 10)
    assert cfg.scheduler.type == "linear" and cfg.target_modules == ["q_proj", "v_proj"] and cfg.learning_rate == 1e-3


def test_every_key_has_a_flag():
    keys = cli_keys()
    assert {"model_name", "dataset_name", "lora_r", "lora_alpha", "merge_every", "merge_alpha", "target_modules",
            "batch_size", "learning_rate", "scheduler.type", "scheduler.warmup_steps", "fp16", "bf16",
            "gradient_accumulation_steps", "max_steps", "num_epochs", "logging_steps", "eval_steps", "save_steps",
            "seed", "max_length"} <= set(keys)


@pytest.mark.parametrize("overrides, message", [
    ({"lora_rank": 8}, "unknown config key"),
    ({"scheduler.kind": "x"}, "unknown config key"),
    ({"learning_rate": "fast"}, "expected a number"),
    ({"merge_alpha": 1.5}, "merge_alpha must be in"),
    ({"method": "dora"}, "method must be one of"),
    ({"merge_split": "half"}, "merge_split must be"),
    ({"merge_moments": "prune:x"}, "prune share"),
    ({"lora_r": 2.5}, "expected an integer"),
    ({"fp16": True, "bf16": True}, "mutually exclusive"),
    ({"scheduler.type": "poly"}, "scheduler.type"),
])
def test_bad_configs_fail_with_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as exc:
        load_config(None, overrides)
    assert "\n" not in str(exc.value)


def test_missing_yaml_is_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(bad)


@pytest.mark.parametrize("overrides, message", [
    ({"max_steps": -5}, "max_steps must be -1"),
    ({"max_steps": 0}, "max_steps must be -1"),
    ({"num_epochs": -1}, "num_epochs must be >= 0"),
    ({"num_eval_samples": 0}, "num_eval_samples must be >= 1"),
    ({"limit_train_examples": 0}, "limit_train_examples must be >= 1"),
    ({"save_steps": -1}, "save_steps must be >= 0"),
])
def test_negative_or_zero_sizes_fail(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)
    assert load_config(None, {"max_steps": -1}).max_steps == -1  # -1 = train for num_epochs


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
    from superrelora.cli import main

    f = tmp_path / "taken.txt"
    f.write_text("x")
    for out in (f, f / "sub"):
        with pytest.raises(UserError, match="is an existing file|is a file, so nothing") as exc:
            main(["--config", str(ROOT / "training_configs" / "tiny_cpu.yaml"), "--output_dir", str(out)])
        assert "\n" not in str(exc.value)
