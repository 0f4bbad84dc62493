"""Bad inputs of llm_streamline's CLIs (owned by llm_streamline): each must fail with one clear line before any model
loads. Format: tests/bad_inputs/__init__.py."""

import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2] / "llm_streamline"
SMALL = ["--model_name", "smollm2-135m", "--data_path", "embedded", "--seq_len", "64", "--train_num_data", "8",
         "--cosine_num_data", "4", "--num_test_blocks", "4", "--device", "cpu"]


def _torch_save(path: Path, obj_src: str) -> None:
    """Write a torch checkpoint with the project's own interpreter (the runner's may lack torch)."""
    code = f"import torch, sys; torch.save({obj_src}, sys.argv[1])"
    subprocess.run([str(PROJECT / ".venv" / "bin" / "python"), "-c", code, str(path)], check=True, timeout=60)


def empty_text(tmp):
    (tmp / "empty.txt").write_text("\n\n")
    return {"empty": tmp / "empty.txt"}


def file_as_output(tmp):
    (tmp / "out").write_text("not a directory")
    return {"out": tmp / "out"}


def truncated_checkpoint(tmp):
    d = tmp / "ckpt"
    d.mkdir()
    (d / "trainer_state.pt").write_bytes(b"PK\x03\x04\x14\x00 truncated")
    return {"ckpt": d}


def mismatched_checkpoint(tmp):
    d = tmp / "ckpt"
    d.mkdir()
    _torch_save(d / "trainer_state.pt", "{'mode': 'mseloss', 'config': {'lr': 0.5, 'seq_len': 64, 'seed': 42}}")
    return {"ckpt": d}


def llm_checkpoint_for_mse(tmp):
    d = tmp / "ckpt"
    d.mkdir()
    _torch_save(d / "trainer_state.pt", "{'mode': 'llmloss', 'config': {}}")
    return {"ckpt": d}


def malformed_samples(tmp):
    for name in ("orig", "pruned"):
        (tmp / name).mkdir()
        (tmp / name / "samples_arc_easy.jsonl").write_text('{"doc_id": 0, "target": 1,\n')
    return {"orig": tmp / "orig", "pruned": tmp / "pruned"}


def a_directory(tmp):
    (tmp / "dir.json").mkdir()
    (tmp / "o").mkdir()
    (tmp / "p").mkdir()
    return {"dir": tmp / "dir.json", "o": tmp / "o", "p": tmp / "p"}


C = "llm_streamline"
CASES = [
    dict(id="mse-missing-data-file", cwd=C, argv=["mseloss_entry.py", *SMALL, "--data_path", "{tmp}/nope.txt",
                                                  "--output_dir", "{tmp}/o"], expect="nope.txt does not exist"),
    dict(id="mse-empty-dataset", cwd=C, argv=["mseloss_entry.py", *SMALL, "--data_path", "{empty}", "--output_dir",
                                              "{tmp}/o"], expect="is empty", setup="empty_text"),
    dict(id="mse-zero-seq-len", cwd=C, argv=["mseloss_entry.py", *SMALL, "--seq_len", "0", "--output_dir", "{tmp}/o"],
         expect="--seq_len must be at least 1"),
    dict(id="mse-negative-train-num-data", cwd=C, argv=["mseloss_entry.py", *SMALL, "--train_num_data", "-5",
                                                        "--output_dir", "{tmp}/o"], expect="--train_num_data must be"),
    dict(id="mse-wrong-flag-type", cwd=C, argv=["mseloss_entry.py", *SMALL, "--layer_intervals", "eight"],
         expect="invalid int value"),
    dict(id="mse-unknown-flag", cwd=C, argv=["mseloss_entry.py", *SMALL, "--layers", "8"], expect="unknown arguments"),
    dict(id="mse-hub-model-offline", cwd=C, argv=["mseloss_entry.py", "--model_name", "meta-llama/Llama-3.1-8B",
                                                  "--data_path", "embedded", "--output_dir", "{tmp}/o"],
         expect="smollm2-135m"),
    dict(id="mse-output-dir-is-a-file", cwd=C, argv=["mseloss_entry.py", *SMALL, "--output_dir", "{out}"],
         expect="exists and is not a directory", setup="file_as_output"),
    dict(id="mse-resume-missing-checkpoint", cwd=C, argv=["mseloss_entry.py", *SMALL, "--output_dir", "{tmp}/o",
                                                          "--resume_from_checkpoint", "{tmp}/none"],
         expect="does not exist"),
    dict(id="mse-resume-truncated-checkpoint", cwd=C, argv=["mseloss_entry.py", *SMALL, "--output_dir", "{tmp}/o",
                                                            "--resume_from_checkpoint", "{ckpt}"],
         expect="corrupt or truncated", setup="truncated_checkpoint"),
    dict(id="mse-resume-mismatched-checkpoint", cwd=C, argv=["mseloss_entry.py", *SMALL, "--lr", "2e-4",
                                                             "--output_dir", "{tmp}/o", "--resume_from_checkpoint",
                                                             "{ckpt}"],
         expect="lr: checkpoint has 0.5, this run has 0.0002", setup="mismatched_checkpoint"),
    dict(id="mse-resume-from-llm-checkpoint", cwd=C, argv=["mseloss_entry.py", *SMALL, "--output_dir", "{tmp}/o",
                                                           "--resume_from_checkpoint", "{ckpt}"],
         expect="llmloss run, not mseloss", setup="llm_checkpoint_for_mse"),
    dict(id="llm-bad-mixed-precision", cwd=C, argv=["llmloss_entry.py", *SMALL, "--mixed_precision", "fp8",
                                                    "--output_dir", "{tmp}/o"], expect="--mixed_precision must be one of"),
    dict(id="llm-missing-data-file", cwd=C, argv=["llmloss_entry.py", *SMALL, "--data_path", "{tmp}/gone.txt",
                                                  "--output_dir", "{tmp}/o"], expect="gone.txt does not exist"),
    dict(id="stability-missing-dir", cwd=C, argv=["calculate_stability.py", "{tmp}/a", "{tmp}/b"],
         expect="does not exist"),
    dict(id="stability-malformed-jsonl", cwd=C, argv=["calculate_stability.py", "{orig}", "{pruned}"],
         expect="not an lm-eval multiple-choice sample", setup="malformed_samples"),
    dict(id="stability-json-is-a-directory", cwd=C, argv=["calculate_stability.py", "{o}", "{p}", "--json", "{dir}"],
         expect="is a directory", setup="a_directory"),
    dict(id="table-unknown-row", cwd=C, argv=["scripts/make_table.py", "--rows", "original,bogus"],
         expect="unknown table rows"),
    dict(id="table-missing-eval-data", cwd=C, argv=["scripts/make_table.py", "--eval_data_dir", "{tmp}/nodata",
                                                    "--work_dir", "{tmp}/w"], expect="nodata does not exist"),
    dict(id="bench-zero-rounds", cwd=C, argv=["scripts/bench.py", "--rounds", "0"], expect="--rounds must be at least 1"),
    dict(id="bench-out-is-a-directory", cwd=C, argv=["scripts/bench.py", "--out", "{tmp}"], expect="is a directory"),
    dict(id="gpu-check-without-cuda", cwd=C, argv=["gpu_check.py", "--out", "{tmp}/g.json"], expect="needs CUDA",
         env={"CUDA_VISIBLE_DEVICES": ""}),
]
