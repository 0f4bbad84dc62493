"""Bad inputs of superrelora's CLIs (owned by superrelora): each must fail with one clear line, exit 2, before any
model loads. Format: tests/bad_inputs/__init__.py."""

import json

TRAIN = "scripts/train_superrelora.py"
TINY = ["--config", "training_configs/tiny_cpu.yaml", "--dataset_name", "tests/data/tiny_corpus.txt",
        "--num_eval_samples", "16"]


def bad_yaml(tmp):
    (tmp / "bad.yaml").write_text("lora_r: [8,\nmerge_every: 2\n")
    (tmp / "list.yaml").write_text("- lora_r\n- 8\n")
    (tmp / "unknown.yaml").write_text("lora_rank: 8\n")
    return {"bad": tmp / "bad.yaml", "list": tmp / "list.yaml", "unknown": tmp / "unknown.yaml"}


def file_as_output(tmp):
    (tmp / "out").write_text("not a directory")
    return {"out": tmp / "out"}


def empty_text(tmp):
    (tmp / "empty.txt").write_text("\n \n\n")
    return {"empty": tmp / "empty.txt"}


def bad_model_config(tmp):
    (tmp / "model.json").write_text('{"model_type": "llama", "hidden_size": ')
    return {"model": tmp / "model.json"}


def _run_record(ckpt, **config):
    base = {"method": "superrelora", "lora_r": 4, "lora_alpha": 8.0, "lora_dropout": 0.0,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "merge_every": 2, "merge_alpha": 0.1, "merge_split": "sqrt", "merge_moments": "consistent",
            "relora_prune": 0.9, "batch_size": 4, "gradient_accumulation_steps": 1, "seed": 42, "max_length": 32,
            "scheduler": {"type": "linear"}}
    base.update(config)
    (ckpt / "superrelora_run.json").write_text(json.dumps({"global_step": 2, "config": base, "merges": []}))


def mismatched_checkpoint(tmp):
    ckpt = tmp / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    _run_record(ckpt, merge_every=3)
    return {"ckpt": ckpt, "out": tmp / "run"}


def truncated_checkpoint(tmp):
    ckpt = tmp / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    _run_record(ckpt)
    (ckpt / "superrelora_state.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\"")
    (ckpt / "optimizer.pt").write_bytes(b"PK\x03\x04 truncated")
    return {"ckpt": ckpt, "out": tmp / "run"}


def corrupt_run_record(tmp):
    ckpt = tmp / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "superrelora_run.json").write_text('{"global_step": 2, "config": {')
    return {"ckpt": ckpt, "out": tmp / "run"}


def corrupt_run_dir(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text("{ not json")
    return {"run": tmp / "run"}


CASES = [
    dict(id="missing-config", cwd="superrelora", argv=[TRAIN, "--config", "{tmp}/nope.yaml"], expect="does not exist"),
    dict(id="malformed-yaml", cwd="superrelora", argv=[TRAIN, "--config", "{bad}"], expect="invalid YAML",
         setup="bad_yaml"),
    dict(id="yaml-not-a-mapping", cwd="superrelora", argv=[TRAIN, "--config", "{list}"], expect="must be a mapping",
         setup="bad_yaml"),
    dict(id="unknown-yaml-key", cwd="superrelora", argv=[TRAIN, "--config", "{unknown}"],
         expect="unknown config key(s): lora_rank", setup="bad_yaml"),
    dict(id="flag-wrong-type", cwd="superrelora", argv=[TRAIN, *TINY, "--learning_rate", "fast"],
         expect="learning_rate': expected a number"),
    dict(id="negative-max-steps", cwd="superrelora", argv=[TRAIN, *TINY, "--max_steps", "-5"],
         expect="max_steps must be -1"),
    dict(id="zero-batch-size", cwd="superrelora", argv=[TRAIN, *TINY, "--batch_size", "0"],
         expect="batch_size must be >= 1"),
    dict(id="zero-eval-samples", cwd="superrelora", argv=[TRAIN, *TINY, "--num_eval_samples", "0"],
         expect="num_eval_samples must be >= 1"),
    dict(id="alpha-1-sqrt-dead-adapter", cwd="superrelora", argv=[TRAIN, *TINY, "--merge_alpha", "1.0"],
         expect="needs merge_split b_only"),
    dict(id="unknown-model-offline", cwd="superrelora",
         argv=[TRAIN, *TINY, "--model_name", "nonexistent-org/nonexistent-model", "--output_dir", "{tmp}/o"],
         expect="offline"),
    dict(id="malformed-model-config-json", cwd="superrelora",
         argv=[TRAIN, *TINY, "--model_name", "{model}", "--output_dir", "{tmp}/o"], expect="invalid JSON",
         setup="bad_model_config"),
    dict(id="output-dir-is-a-file", cwd="superrelora", argv=[TRAIN, *TINY, "--output_dir", "{out}"],
         expect="is an existing file", setup="file_as_output"),
    dict(id="output-dir-under-a-file", cwd="superrelora", argv=[TRAIN, *TINY, "--output_dir", "{out}/run"],
         expect="is a file, so nothing can be written below it", setup="file_as_output"),
    dict(id="empty-dataset", cwd="superrelora",
         argv=[TRAIN, *TINY, "--dataset_name", "{empty}", "--output_dir", "{tmp}/o"], expect="0 non-empty lines",
         setup="empty_text"),
    dict(id="missing-dataset-file", cwd="superrelora",
         argv=[TRAIN, *TINY, "--dataset_name", "{tmp}/nope.txt", "--output_dir", "{tmp}/o"], expect="nope.txt"),
    dict(id="resume-missing-checkpoint", cwd="superrelora",
         argv=[TRAIN, *TINY, "--output_dir", "{tmp}/o", "--resume_from_checkpoint", "{tmp}/o/checkpoint-9"],
         expect="no such checkpoint"),
    dict(id="resume-latest-without-checkpoints", cwd="superrelora",
         argv=[TRAIN, *TINY, "--output_dir", "{tmp}/o", "--resume_from_checkpoint", "latest"],
         expect="no such checkpoint"),
    dict(id="resume-mismatched-checkpoint", cwd="superrelora",
         argv=[TRAIN, *TINY, "--output_dir", "{out}", "--resume_from_checkpoint", "{ckpt}"],
         expect="merge_every: checkpoint has 3, this run has 2", setup="mismatched_checkpoint"),
    dict(id="resume-truncated-checkpoint", cwd="superrelora",
         argv=[TRAIN, *TINY, "--output_dir", "{out}", "--resume_from_checkpoint", "{ckpt}"],
         expect="corrupt or truncated", setup="truncated_checkpoint"),
    dict(id="resume-corrupt-run-record", cwd="superrelora",
         argv=[TRAIN, *TINY, "--output_dir", "{out}", "--resume_from_checkpoint", "{ckpt}"],
         expect="corrupt run record", setup="corrupt_run_record"),
    dict(id="pretrain-missing-text-file", cwd="superrelora",
         argv=["scripts/pretrain_table.py", "--preset", "smoke", "--text_file", "{tmp}/nope.txt"],
         expect="--text_file"),
    dict(id="pretrain-data-dir-without-wikitext", cwd="superrelora",
         argv=["scripts/pretrain_table.py", "--data_dir", "{tmp}", "--out_root", "{tmp}/o"], expect="wikitext2/valid.txt"),
    dict(id="pretrain-seeds-not-integers", cwd="superrelora",
         argv=["scripts/pretrain_table.py", "--seeds", "0,one"], expect="--seeds must be comma-separated integers"),
    dict(id="pretrain-results-is-a-file", cwd="superrelora",
         argv=["scripts/pretrain_table.py", "--preset", "smoke", "--text_file", "tests/data/tiny_corpus.txt",
               "--out_root", "{tmp}/o", "--results", "{out}"], expect="is an existing file", setup="file_as_output"),
    dict(id="gpu-check-zero-peak", cwd="superrelora", argv=["gpu_check.py", "--out", "{tmp}/g.json", "--peak_tflops", "0"],
         expect="--peak_tflops must be > 0"),
    dict(id="evaluate-missing-run-dir", cwd="superrelora", argv=["scripts/evaluate.py", "--run_dir", "{tmp}/nope"],
         expect="no config.json"),
    dict(id="evaluate-corrupt-config", cwd="superrelora", argv=["scripts/evaluate.py", "--run_dir", "{run}"],
         expect="invalid JSON", setup="corrupt_run_dir"),
]
