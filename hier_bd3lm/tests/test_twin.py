"""The solvable GSM8K twin: gold executions re-execute to the gold answer, plans have no numbers, splits are
disjoint by question, the longer split has one more operation, and the slot ceiling / truncation report.

python -m pytest tests/test_twin.py -q
"""

import json
import subprocess
import sys

from conftest import PROJECT

from hier_bd3lm.data import encode_records, truncation_and_ceiling
from hier_bd3lm.masks import Layout
from hier_bd3lm.tokenizer import CharTokenizer
from hier_bd3lm.twin import check_record, make_twin


def test_twin_records_are_consistent_and_disjoint():
    d = make_twin(300, 60, 40, seed=3)
    assert [len(d[k]) for k in ("train", "test", "longer")] == [300, 60, 40]
    for recs in d.values():
        for r in recs:
            assert check_record(r), r
            assert not any(c.isdigit() for c in r["plan"]), r["plan"]
            assert r["plan"].count(".") == len(r["ops"]) + 1
            assert r["execution"].count("\n") == len(r["ops"]) - 1
            assert all(1 <= int(v) <= 99 for line in r["execution"].split("\n")
                       for v in line.replace("=", " ").replace("+", " ").replace("-", " ").replace("*", " ").replace("/", " ").split())
    assert {len(r["ops"]) for r in d["train"]} == {2, 3, 4} and {len(r["ops"]) for r in d["longer"]} == {5}
    qs = {k: {r["question"] for r in v} for k, v in d.items()}
    assert not qs["train"] & qs["test"] and not qs["train"] & qs["longer"] and not qs["test"] & qs["longer"]
    assert len(qs["train"]) == 300  # distinct inside a split too
    assert make_twin(300, 60, 40, seed=3) == d and make_twin(300, 60, 40, seed=4)["test"] != d["test"]
    # a broken gold execution is caught
    bad = dict(d["test"][0], answer_numerical=str(int(d["test"][0]["answer_numerical"]) + 1))
    assert not check_record(bad)


def test_ceiling_and_truncation_report_the_slots():
    recs = make_twin(50, 20, 20, seed=0)["longer"]
    texts = [t for r in recs for t in (r["question"], r["plan"], r["execution"] + "\n#### " + r["answer_numerical"])]
    tok = CharTokenizer.fit(texts)
    roomy = truncation_and_ceiling(recs, tok, Layout(400, 400, 120, 8))
    assert roomy["ceiling"] == 1.0 and roomy["truncated_exec"] == roomy["truncated_question"] == 0.0
    tight = truncation_and_ceiling(recs, tok, Layout(64, 64, 24, 8))  # answers cut off: the ceiling drops
    assert tight["truncated_exec"] == 1.0 and tight["ceiling"] == 0.0 and tight["truncated_question"] == 1.0
    assert len(tight["correct"]) == 20
    enc = encode_records(recs, tok, Layout(400, 400, 120, 8))
    assert enc.input_ids.shape == (20, 920)


def test_generate_twin_cli(tmp_path):
    r = subprocess.run([sys.executable, "scripts/data_prep/generate_twin.py", "--output_dir", str(tmp_path / "d"),
                        "--n_train", "30", "--n_test", "5", "--n_longer", "5"], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    paths = json.loads(r.stdout)
    assert len(json.loads(open(paths["longer"]).read())) == 5
    r = subprocess.run([sys.executable, "scripts/data_prep/generate_twin.py", "--output_dir", str(tmp_path / "e"),
                        "--n_test", "0"], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 2 and "--n_test must be >= 1" in r.stderr and "Traceback" not in r.stderr
