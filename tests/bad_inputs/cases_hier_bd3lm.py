"""Bad inputs of hier_bd3lm's CLIs (owned by hier_bd3lm): each must fail with one clear line, exit 2, before any
model is trained or loaded. Format: tests/bad_inputs/__init__.py."""

import json

MAIN = "main.py"
FIX = "tests/fixtures"
# a small valid training setup (char tokenizer, tiny slots) that each case breaks in one place
TINY = ["model=micro", "data.tokenizer=char", f"data.train_path={FIX}/hier_gsm8k_train.json",
        f"data.test_path={FIX}/hier_gsm8k_test.json", "training.hierarchical.question_len=32",
        "training.hierarchical.plan_len=32", "training.hierarchical.exec_len=64", "training.hierarchical.total_len=128",
        "block_size=8", "loader.batch_size=4", "trainer.max_steps=1", "trainer.device=cpu"]
TINY_NO_DATA = [a for a in TINY if not a.startswith("data.t")]


def bad_records(tmp):
    (tmp / "malformed.json").write_text('[{"question": "q", "plan": "p",\n "execution": ')
    (tmp / "missing.jsonl").write_text(json.dumps({"question": "q", "plan": "p"}) + "\n")
    (tmp / "empty.json").write_text("[]")
    (tmp / "afile").write_text("not a directory")
    return {"malformed": tmp / "malformed.json", "missing": tmp / "missing.jsonl", "empty": tmp / "empty.json",
            "afile": tmp / "afile"}


def _config(question_len=32, tokenizer="char"):
    return {"mode": "train", "seed": 1, "block_size": 8, "algo": {"name": "bd3lm"},
            "model": {"hidden_size": 32, "cond_dim": 16, "n_blocks": 2, "n_heads": 2, "adaln": False},
            "noise": {"type": "loglinear"},
            "training": {"hierarchical": {"enabled": True, "question_len": question_len, "plan_len": 32,
                                          "exec_len": 64, "total_len": question_len + 96,
                                          "exec_sees_noisy_plan": False}},
            "data": {"tokenizer": tokenizer, "max_vocab": None, "exec_include_answer": True}}


def mismatched_checkpoint(tmp):
    ck = tmp / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"PK\x03\x04 not really")
    (ck / "last.json").write_text(json.dumps({"step": 3, "config": _config(question_len=16)}))
    return {"run": tmp / "run"}


def tokenizer_changed_checkpoint(tmp):
    ck = tmp / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"PK\x03\x04 not really")
    (ck / "last.json").write_text(json.dumps({"step": 3, "config": _config(tokenizer="smollm2-135m")}))
    return {"run": tmp / "run"}


def truncated_checkpoint(tmp):
    ck = tmp / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00 truncated")
    return {"run": tmp / "run", "ckpt": ck / "last.ckpt"}


def bad_sidecar(tmp):
    ck = tmp / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"x")
    (ck / "last.json").write_text('{"step": 3, "config": ')
    return {"run": tmp / "run"}


CASES = [
    # configuration values
    dict(id="train-steps-not-int", cwd="hier_bd3lm", argv=[MAIN, *TINY, "trainer.max_steps=abc"], expect="bad config"),
    dict(id="train-negative-lr", cwd="hier_bd3lm", argv=[MAIN, *TINY, "optim.lr=-1e-3"], expect="optim.lr must be > 0"),
    dict(id="train-zero-batch", cwd="hier_bd3lm", argv=[MAIN, *TINY, "loader.batch_size=0"], expect="batch_size"),
    dict(id="train-unknown-key", cwd="hier_bd3lm", argv=[MAIN, *TINY, "trainer.max_stepz=3"], expect="bad config"),
    dict(id="train-block-straddles-plan-exec", cwd="hier_bd3lm",
         argv=[MAIN, *TINY, "training.hierarchical.plan_len=36", "training.hierarchical.exec_len=60"],
         expect="does not divide plan_len 36"),
    dict(id="train-lengths-do-not-add-up", cwd="hier_bd3lm", argv=[MAIN, *TINY, "training.hierarchical.total_len=100"],
         expect="do not add up"),
    dict(id="train-unknown-model-group", cwd="hier_bd3lm", argv=[MAIN, *TINY, "model=huge"], expect="unknown model config"),
    dict(id="train-mdlm-hierarchical", cwd="hier_bd3lm", argv=[MAIN, *TINY, "algo=mdlm"], expect="plan would attend"),
    # data files
    dict(id="train-missing-data", cwd="hier_bd3lm", argv=[MAIN, *TINY_NO_DATA, "data.train_path={tmp}/nope.json"],
         expect="does not exist"),
    dict(id="train-malformed-json", cwd="hier_bd3lm", argv=[MAIN, *TINY_NO_DATA, "data.train_path={malformed}"],
         expect="malformed JSON", setup="bad_records"),
    dict(id="train-jsonl-missing-field", cwd="hier_bd3lm", argv=[MAIN, *TINY_NO_DATA, "data.train_path={missing}"],
         expect="missing field", setup="bad_records"),
    dict(id="train-empty-dataset", cwd="hier_bd3lm", argv=[MAIN, *TINY_NO_DATA, "data.train_path={empty}"],
         expect="no records", setup="bad_records"),
    dict(id="train-unknown-tokenizer-offline", cwd="hier_bd3lm",
         argv=[MAIN, *[a for a in TINY if not a.startswith("data.tokenizer")], "data.tokenizer=meta-llama/Llama-3.2-1B",
               "checkpointing.save_dir={tmp}/run"], expect="offline"),
    # outputs and checkpoints
    dict(id="train-save-dir-is-file", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={afile}"],
         expect="is an existing file", setup="bad_records"),
    dict(id="train-save-dir-under-file", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={afile}/run"],
         expect="is a file", setup="bad_records"),
    dict(id="train-resume-mismatched-layout", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={run}"],
         expect="training.hierarchical.question_len", setup="mismatched_checkpoint"),
    dict(id="train-resume-other-tokenizer", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={run}"],
         expect="data.tokenizer", setup="tokenizer_changed_checkpoint"),
    dict(id="train-resume-truncated", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={run}"],
         expect="corrupt or truncated", setup="truncated_checkpoint"),
    dict(id="train-resume-bad-sidecar", cwd="hier_bd3lm", argv=[MAIN, *TINY, "checkpointing.save_dir={run}"],
         expect="not valid JSON", setup="bad_sidecar"),
    dict(id="eval-missing-checkpoint", cwd="hier_bd3lm",
         argv=[MAIN, "mode=ppl_eval", "eval.checkpoint_path={tmp}/none.ckpt"], expect="does not exist"),
    dict(id="eval-truncated-checkpoint", cwd="hier_bd3lm",
         argv=[MAIN, "mode=sample_eval", "eval.checkpoint_path={ckpt}"], expect="corrupt or truncated",
         setup="truncated_checkpoint"),
    dict(id="eval-output-under-file", cwd="hier_bd3lm",
         argv=[MAIN, "mode=ppl_eval", "eval.checkpoint_path={tmp}/none.ckpt", "eval.output_path={afile}/out.json"],
         expect="is a file", setup="bad_records"),
    # the other CLIs
    dict(id="plans-output-under-file", cwd="hier_bd3lm",
         argv=["scripts/data_prep/generate_gsm8k_plans.py", "--backend", "rule", "--data_path",
               f"{FIX}/gsm8k_train.jsonl", "--output_path", "{afile}/plans.json"], expect="is a file",
         setup="bad_records"),
    dict(id="plans-zero-examples", cwd="hier_bd3lm",
         argv=["scripts/data_prep/generate_gsm8k_plans.py", "--backend", "rule", "--num_examples", "0",
               "--output_path", "{tmp}/p.json"], expect="must be >= 1"),
    dict(id="plans-unknown-model-offline", cwd="hier_bd3lm",
         argv=["scripts/data_prep/generate_gsm8k_plans.py", "--backend", "hf", "--model", "meta-llama/Llama-3.2-1B",
               "--data_path", f"{FIX}/gsm8k_train.jsonl", "--num_examples", "1", "--output_path", "{tmp}/p.json"],
         expect="offline"),
    dict(id="analysis-missing-data", cwd="hier_bd3lm",
         argv=["scripts/analysis/analyze_gsm8k_plans.py", "--data_path", "{tmp}/none.json"], expect="does not exist"),
    dict(id="analysis-plot-under-file", cwd="hier_bd3lm",
         argv=["scripts/analysis/analyze_gsm8k_plans.py", "--data_path", f"{FIX}/hier_gsm8k_test.json",
               "--output_plot", "{afile}/a.png"], expect="is a file", setup="bad_records"),
    dict(id="mask-plot-under-file", cwd="hier_bd3lm",
         argv=["test_hierarchical_mask.py", "--output_plot", "{afile}/m.png"], expect="is a file", setup="bad_records"),
    dict(id="twin-zero-test", cwd="hier_bd3lm",
         argv=["scripts/data_prep/generate_twin.py", "--output_dir", "{tmp}/d", "--n_test", "0"], expect="--n_test"),
    dict(id="twin-table-bad-lengths", cwd="hier_bd3lm",
         argv=["scripts/twin_table.py", "--lengths", "80,48", "--run_dir", "{tmp}/r"], expect="--lengths"),
    dict(id="twin-table-run-dir-is-file", cwd="hier_bd3lm",
         argv=["scripts/twin_table.py", "--run_dir", "{afile}"], expect="is an existing file", setup="bad_records"),
]
