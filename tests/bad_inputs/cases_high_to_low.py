"""Bad inputs of high_to_low's CLIs (owned by high_to_low): each must fail with one clear line, exit 2, before any
real model loads (the tiny from-scratch model at most). Format: tests/bad_inputs/__init__.py."""

import json

TRAIN = "train.py"
EVAL = "evaluation.py"
TINY = ["--model_name", "tiny", "--dataset_name", "parity", "--seq_len", "4", "--num_train", "32", "--batch_size", "8",
        "--max_steps", "2", "--device", "cpu", "--threads", "1"]


def file_as_folder(tmp):
    (tmp / "ckpt").write_text("not a directory")
    return {"file": tmp / "ckpt"}


def _folder(tmp, config):
    folder = tmp / "improved_training_checkpoint_test_tiny_parity"
    folder.mkdir(parents=True)
    (folder / "save_configs.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return folder


def malformed_config(tmp):
    return {"ckpt": _folder(tmp, '{"batch_size": 8, "group_size": ')}


def config_not_from_train(tmp):
    return {"ckpt": _folder(tmp, [1, 2, 3])}


def no_checkpoints(tmp):
    cfg = {"dataset_name": "parity", "our_method": True, "model_name": "tiny", "bridges": [[3, 0]], "bridge_rank": 4,
           "lora_rank": 4, "multiplier": 100, "group_size": 4, "full_finetune": True, "seq_len": 4, "max_n": 30}
    return {"ckpt": _folder(tmp, cfg), "out": tmp / "results"}


def result_folder_is_file(tmp):
    paths = no_checkpoints(tmp)
    (tmp / "res").write_text("a file")
    return {**paths, "res": tmp / "res"}


def mismatched_checkpoint(tmp):
    _folder(tmp, {"seed": 7, "batch_size": 8, "group_size": 4})
    return {"root": tmp}


def truncated_checkpoint(tmp):
    folder = _folder(tmp, {})  # no saved keys to compare: the resume reaches the checkpoint files
    (folder / "pretrain_improved_1.pth").write_bytes(b"PK\x03\x04 truncated")
    (folder / "optimizer_state_1.pth").write_bytes(b"PK\x03\x04 truncated")
    (folder / "loss_tracking_1.json").write_text("[0.5]")
    (folder / "training_state_1.json").write_text('{"iteration": 1, "epoch": 0}')
    return {"root": tmp}


def empty_train_file(tmp):
    data = tmp / "data"
    data.mkdir()
    (data / "train.txt").write_text("\n\n")
    return {"data": data}


def malformed_gsm8k_line(tmp):
    data = tmp / "data"
    data.mkdir()
    (data / "train.txt").write_text("What is 2+2?||<<2+2=4>> #### 4\nno separator on this line\n")
    return {"data": data}


CASES = [
    # issue 16's four
    dict(id="checkpoint-root-is-file", cwd="high_to_low", argv=[TRAIN, *TINY, "--checkpoint_root_folder", "{file}"],
         expect="is an existing file", setup="file_as_folder"),
    dict(id="eval-checkpoint-folder-is-file", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{file}", "--dataset_name", "parity", "--result_folder", "{tmp}/r"],
         expect="is a file, not a checkpoint folder", setup="file_as_folder"),
    dict(id="malformed-save-configs", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity", "--result_folder", "{tmp}/r"],
         expect="is not valid JSON", setup="malformed_config"),
    dict(id="parity-seq-len-zero", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--seq_len", "0", "--checkpoint_root_folder", "{tmp}/c"], expect="--seq_len must be >= 1"),
    dict(id="negative-batch-size", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--batch_size", "-4", "--checkpoint_root_folder", "{tmp}/c"],
         expect="--batch_size must be >= 1"),
    # more flags
    dict(id="zero-group-size", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--group_size", "0", "--checkpoint_root_folder", "{tmp}/c"],
         expect="--group_size must be >= 1"),
    dict(id="flag-wrong-type", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--batch_size", "many", "--checkpoint_root_folder", "{tmp}/c"],
         expect="invalid int value: 'many'"),
    dict(id="bool-flag-not-bool", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--our_method", "maybe", "--checkpoint_root_folder", "{tmp}/c"],
         expect="expected True or False"),
    dict(id="min-len-above-seq-len", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--min_len", "9", "--checkpoint_root_folder", "{tmp}/c"],
         expect="parity needs 1 <= --min_len <= --seq_len"),
    dict(id="split-does-not-divide", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--split_batch_into", "3", "--checkpoint_root_folder", "{tmp}/c"],
         expect="--split_batch_into 3 must divide --batch_size 8"),
    dict(id="unknown-dataset", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--dataset_name", "mnist", "--checkpoint_root_folder", "{tmp}/c"],
         expect="unknown --dataset_name 'mnist'"),
    dict(id="hub-model-offline", cwd="high_to_low",
         argv=[TRAIN, "--model_name", "meta-llama/Llama-3.1-8B", "--dataset_name", "parity",
               "--checkpoint_root_folder", "{tmp}/c"], expect="offline"),
    dict(id="missing-model-dir", cwd="high_to_low",
         argv=[TRAIN, "--model_name", "./no/such/model", "--dataset_name", "parity",
               "--checkpoint_root_folder", "{tmp}/c"], expect="does not exist"),
    # files and resume
    dict(id="resume-mismatched-config", cwd="high_to_low", argv=[TRAIN, *TINY, "--checkpoint_root_folder", "{root}"],
         expect="cannot resume: settings differ", setup="mismatched_checkpoint"),
    dict(id="resume-truncated-checkpoint", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--checkpoint_root_folder", "{root}"], expect="corrupt or truncated",
         setup="truncated_checkpoint"),
    dict(id="empty-train-file", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--data_dir", "{data}", "--checkpoint_root_folder", "{tmp}/c"],
         expect="0 training examples", setup="empty_train_file"),
    dict(id="missing-data-dir", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--data_dir", "{tmp}/nowhere", "--checkpoint_root_folder", "{tmp}/c"],
         expect="no train file"),
    dict(id="malformed-qa-line", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--dataset_name", "gsm8k", "--data_dir", "{data}", "--checkpoint_root_folder", "{tmp}/c"],
         expect="train.txt:2: expected 'question||", setup="malformed_gsm8k_line"),
    dict(id="gsm8k-without-data-dir", cwd="high_to_low",
         argv=[TRAIN, *TINY, "--dataset_name", "gsm8k", "--checkpoint_root_folder", "{tmp}/c"],
         expect="gsm8k needs --data_dir"),
    # evaluation
    dict(id="eval-config-not-from-train", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity", "--result_folder", "{tmp}/r"],
         expect="lacks dataset_name", setup="config_not_from_train"),
    dict(id="eval-no-checkpoints", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity", "--result_folder", "{out}"],
         expect="no pretrain_improved_*.pth checkpoints", setup="no_checkpoints"),
    dict(id="eval-result-folder-is-file", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity", "--result_folder", "{res}"],
         expect="is an existing file", setup="result_folder_is_file"),
    dict(id="eval-zero-examples", cwd="high_to_low",
         argv=[EVAL, "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity", "--result_folder", "{out}",
               "--num_eval", "0"], expect="--num_eval must be >= 1", setup="no_checkpoints"),
    dict(id="eval-wrong-script", cwd="high_to_low",
         argv=["evaluation_transformer.py", "--checkpoint_folder", "{ckpt}", "--dataset_name", "parity",
               "--result_folder", "{out}"], expect="use evaluation.py", setup="no_checkpoints"),
    dict(id="datasets-unknown-name", cwd="high_to_low",
         argv=["-m", "high_to_low.reasoning_datasets", "--dataset_name", "mnist", "--out_dir", "{tmp}/d"],
         expect="unknown --dataset_name 'mnist'"),
    dict(id="bench-zero-rounds", cwd="high_to_low", argv=["-m", "high_to_low.bench", "--rounds", "0"],
         expect="--rounds must be >= 1"),
    dict(id="gpu-check-needs-cuda", cwd="high_to_low", argv=["gpu_check.py", "--out", "{tmp}/g.json"],
         expect="needs a CUDA GPU"),
]
