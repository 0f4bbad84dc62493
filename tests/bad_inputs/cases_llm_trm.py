"""Bad inputs of llm_trm's CLIs (owned by llm_trm): each must fail with one clear line, exit 2, before any model
is trained (phase 1, phase-2 datagen, phase 2, phase 3, the pipeline). Format: tests/bad_inputs/__init__.py."""

import subprocess
from pathlib import Path

LLM_TRM = Path(__file__).resolve().parents[2] / "llm_trm"
P1 = ["-m", "llm_trm.phase1", "--no_wandb", "--device", "cpu"]
P2 = ["-m", "llm_trm.phase2"]
DG = ["-m", "llm_trm.phase2_datagen", "--device", "cpu"]
P3 = ["-m", "llm_trm.phase3", "--device", "cpu"]

_MAKE_PAIRS = """
import sys, json, torch
out = sys.argv[1]
torch.save({"hidden_pre": [torch.zeros(3, 8), torch.zeros(4, 8)], "hidden_post": torch.zeros(2, 8),
            "post_token_id": torch.zeros(2, dtype=torch.long), "target_hit_rate": 1.0, "model_name": "x"},
           out + "/pairs.pt")
import pathlib
d = pathlib.Path(out) / "p2"
d.mkdir()
torch.save({"config": {"learning_rate": 123.0}, "model": {}}, d / "last.pt")
(d / "config.json").write_text(json.dumps({"sentinel": True}))
"""


def files(tmp):
    (tmp / "not_torch.pt").write_text("this is text, not a torch file")
    (tmp / "afile").write_text("a file where a folder is expected")
    (tmp / "truncated.pt").write_bytes(b"PK\x03\x04\x00\x00")
    (tmp / "ck").mkdir()
    (tmp / "ck" / "stage1a_resume.pt").write_bytes(b"PK\x03\x04 truncated")
    return {"not_torch": tmp / "not_torch.pt", "afile": tmp / "afile", "truncated": tmp / "truncated.pt",
            "ck": tmp / "ck"}


def pairs(tmp):
    subprocess.run([str(LLM_TRM / ".venv/bin/python"), "-c", _MAKE_PAIRS, str(tmp)], check=True, timeout=60)
    return {"pairs": tmp / "pairs.pt", "p2": tmp / "p2"}


CASES = [
    dict(id="llm_trm-p2-pairs-not-torch", cwd="llm_trm", setup="files",
         argv=[*P2, "--data_path", "{not_torch}", "--output_dir", "{tmp}/out"], expect="corrupt"),
    dict(id="llm_trm-p2-pairs-missing", cwd="llm_trm",
         argv=[*P2, "--data_path", "{tmp}/nope/pairs.pt", "--output_dir", "{tmp}/out"], expect="does not exist"),
    dict(id="llm_trm-p2-output-dir-is-file", cwd="llm_trm", setup="files",
         argv=[*P2, "--data_path", "{not_torch}", "--output_dir", "{afile}"], expect="existing file"),
    dict(id="llm_trm-p2-resume-mismatch", cwd="llm_trm", setup="pairs",
         argv=[*P2, "--data_path", "{pairs}", "--output_dir", "{p2}", "--resume"], expect="different settings"),
    dict(id="llm_trm-p2-zero-epochs", cwd="llm_trm", argv=[*P2, "--num_epochs", "0"], expect="invalid value"),
    dict(id="llm_trm-p1-data-path-missing", cwd="llm_trm",
         argv=[*P1, "--data_path", "{tmp}/no_such_folder", "--output_dir", "{tmp}/out"], expect="does not exist"),
    dict(id="llm_trm-p1-output-dir-is-file", cwd="llm_trm", setup="files",
         argv=[*P1, "--output_dir", "{afile}"], expect="existing file"),
    dict(id="llm_trm-p1-zero-width", cwd="llm_trm", argv=[*P1, "--d_compressed", "0"], expect="invalid value"),
    dict(id="llm_trm-p1-flag-type", cwd="llm_trm", argv=[*P1, "--num_epochs", "ten"], expect="invalid int value"),
    dict(id="llm_trm-p1-negative-lr", cwd="llm_trm", argv=[*P1, "--learning_rate", "-1"], expect="invalid value"),
    dict(id="llm_trm-p1-resume-truncated", cwd="llm_trm", setup="files",
         argv=[*P1, "--output_dir", "{ck}", "--resume", "--d_compressed", "8"], expect="corrupt"),
    dict(id="llm_trm-p1-stage1b-without-1a", cwd="llm_trm",
         argv=[*P1, "--stage", "1b", "--output_dir", "{tmp}/empty", "--d_compressed", "8"], expect="not found"),
    dict(id="llm_trm-p1-unknown-model-offline", cwd="llm_trm",
         argv=[*P1, "--model_name", "no-such-org/no-such-model", "--output_dir", "{tmp}/out"], expect="offline"),
    dict(id="llm_trm-datagen-zero-samples", cwd="llm_trm", argv=[*DG, "--num_samples", "0"], expect="invalid value"),
    dict(id="llm_trm-datagen-output-is-file", cwd="llm_trm", setup="files",
         argv=[*DG, "--output_dir", "{afile}", "--num_samples", "4"], expect="existing file"),
    dict(id="llm_trm-datagen-bad-fraction", cwd="llm_trm", argv=[*DG, "--heldout_fraction", "1.5"], expect="(0, 1)"),
    dict(id="llm_trm-p3-trm-missing", cwd="llm_trm",
         argv=[*P3, "--trm_checkpoint", "{tmp}/none.pt", "--compressor_checkpoint", "{tmp}/none.pt",
               "--output_dir", "{tmp}/out"], expect="not found"),
    dict(id="llm_trm-p3-compressor-truncated", cwd="llm_trm", setup="files",
         argv=[*P3, "--compressor_checkpoint", "{truncated}", "--output_dir", "{tmp}/out"],
         expect="not a phase-1 compressor checkpoint"),
    dict(id="llm_trm-p3-group-size", cwd="llm_trm", argv=[*P3, "--group_size", "1"], expect="group_size"),
    dict(id="llm_trm-pipeline-data-missing", cwd="llm_trm",
         argv=["-m", "llm_trm.pipeline", "--preset", "cpu", "--data_path", "{tmp}/none"], expect="does not exist"),
]
