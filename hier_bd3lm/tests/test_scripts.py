"""README command-line tools on fixtures (rule backend, char tokenizer, no model).

python -m pytest tests/test_scripts.py -q
"""

import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, PROJECT

from hier_bd3lm.analysis import CATEGORIES, analyze, count_numbers, count_operations
from hier_bd3lm.data import read_records


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True)


def test_generate_rule_backend_writes_records_and_resumes(tmp_path):
    out = tmp_path / "plans.json"
    r = run("scripts/data_prep/generate_gsm8k_plans.py", "--backend", "rule", "--split", "train", "--num_examples", "5",
            "--data_path", str(FIXTURES / "gsm8k_train.jsonl"), "--output_path", str(out), "--temperature", "0.8",
            "--top_p", "0.9", "--max_tokens", "128", "--tensor_parallel_size", "1", "--model", "unused")
    assert r.returncode == 0, r.stderr
    recs = read_records(out)
    assert [x["id"] for x in recs] == [f"gsm8k_train_{i}" for i in range(5)]
    assert recs[1]["answer_numerical"] == "10" and "<<" in recs[1]["execution"]
    r = run("scripts/data_prep/generate_gsm8k_plans.py", "--backend", "rule", "--split", "train", "--num_examples", "8",
            "--data_path", str(FIXTURES / "gsm8k_train.jsonl"), "--output_path", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["generated"] == 3 and len(read_records(out)) == 8


def test_generate_without_vllm_is_one_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm installed")
    except ImportError:
        pass
    r = run("scripts/data_prep/generate_gsm8k_plans.py", "--backend", "vllm", "--num_examples", "2",
            "--data_path", str(FIXTURES / "gsm8k_train.jsonl"), "--output_path", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "vLLM is not installed" in r.stderr and r.stderr.strip().count("\n") == 0


def test_dataloader_cli_analyze():
    r = run("gsm8k_dataloader.py", "--data_path", str(FIXTURES / "hier_gsm8k_train.json"), "--tokenizer", "char",
            "--analyze")
    assert r.returncode == 0, r.stderr
    assert "p95" in r.stdout and "Recommended (p95)" in r.stdout and "total" in r.stdout
    r = run("gsm8k_dataloader.py", "--data_path", str(FIXTURES / "hier_gsm8k_train.json"), "--tokenizer", "char")
    assert r.returncode == 0 and "Dataset size: 12" in r.stdout and "(12, 512)" in r.stdout


def test_analysis_quirks_and_categories(tmp_path):
    assert count_numbers("3.5 and <<2*3=6>>6") == 6 and count_operations("re-use <<2*3=6>>") == 7
    recs = read_records(FIXTURES / "hier_gsm8k_train.json")
    recs[0] = dict(recs[0], plan="Take 1, 2, 3, 4, 5 and 6.")
    res = analyze(recs)
    assert sum(c["percent"] for c in res["categories"].values()) == pytest.approx(100.0)
    assert res["categories"][CATEGORIES[-1][0]]["count"] == 1 and res["number_ratio"] > 3
    src = tmp_path / "recs.json"
    src.write_text(json.dumps(recs))
    png = tmp_path / "fig.png"
    r = run("scripts/analysis/analyze_gsm8k_plans.py", "--data_path", str(src), "--output_plot", str(png),
            "--num_samples", "2", "--output_json", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    assert "Too concrete (>5)" in r.stdout and png.stat().st_size > 10000
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[1] == 1800  # 12 in x 150 dpi


def test_mask_script_runs(tmp_path):
    r = run("test_hierarchical_mask.py", "--output_plot", str(tmp_path / "m.png"))
    assert r.returncode == 0 and "all mask checks passed" in r.stdout and (tmp_path / "m.png").is_file()


def test_malformed_record_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"question": "q", "plan": "p", "execution": "e", "answer_numerical": "1"},\n  {"question": "q"}\n]\n')
    r = run("gsm8k_dataloader.py", "--data_path", str(bad), "--tokenizer", "char")
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and r.stderr.strip().count("\n") == 0


def test_analysis_prints_inf_ratio_for_number_free_plans(tmp_path):
    recs = [{"id": "a", "question": "q", "plan": "Add them.", "execution": "2+3=5", "answer_numerical": "5"}]
    (tmp_path / "r.json").write_text(json.dumps(recs))
    r = run("scripts/analysis/analyze_gsm8k_plans.py", "--data_path", str(tmp_path / "r.json"),
            "--output_plot", str(tmp_path / "a.png"), "--output_json", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    assert "numbers inf" in r.stdout and "e+" not in r.stdout and "2445" not in r.stdout
    assert json.loads((tmp_path / "a.json").read_text())["number_ratio"] is None


@pytest.mark.parametrize("script,flag", [
    ("scripts/data_prep/generate_gsm8k_plans.py", "--output_path"),
    ("scripts/analysis/analyze_gsm8k_plans.py", "--output_plot"),
    ("test_hierarchical_mask.py", "--output_plot"),
])
def test_output_path_under_a_file_is_one_line(tmp_path, script, flag):
    (tmp_path / "afile").write_text("x")
    extra = {"scripts/data_prep/generate_gsm8k_plans.py": ["--backend", "rule", "--data_path",
                                                           str(FIXTURES / "gsm8k_train.jsonl")],
             "scripts/analysis/analyze_gsm8k_plans.py": ["--data_path", str(FIXTURES / "hier_gsm8k_test.json")]}
    r = run(script, *extra.get(script, []), flag, str(tmp_path / "afile" / "out.png"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "is a file" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
