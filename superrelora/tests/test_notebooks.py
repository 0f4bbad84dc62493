"""Both notebooks run top to bottom (every code cell, in order, in one namespace, in a fresh interpreter).

    python -m pytest tests/test_notebooks.py -q
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = """
import json, sys
ns = {"__name__": "__main__"}
for cell in json.load(open(sys.argv[1]))["cells"]:
    if cell["cell_type"] == "code":
        exec(compile("".join(cell["source"]), sys.argv[1], "exec"), ns)
"""


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    return tmp_path_factory.mktemp("nb")  # both notebooks reuse the same tiny demo runs


@pytest.mark.parametrize("name, product", [("check_ranks", "rank_spectra.png"), ("plot_loss", "loss_curve.png")])
def test_notebook_runs_top_to_bottom(shared_out, name, product):
    tmp_path = shared_out
    env = dict(os.environ, RUN_ROOT=str(tmp_path / "no_runs_here"), NB_OUT=str(tmp_path / "out"))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "notebooks" / f"{name}.ipynb")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / product).stat().st_size > 1000
    if name == "check_ranks":  # demo runs: SuperReLoRA (merges) above r = 2, LoRA at most r
        rows = {ln.split("|")[1].strip(): ln for ln in proc.stdout.splitlines() if ln.startswith("| ")}
        assert int(float(rows["lora"].split("|")[3])) <= 2 < int(float(rows["superrelora"].split("|")[3]))
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    assert all(c.get("outputs", []) == [] for c in nb["cells"] if c["cell_type"] == "code")  # committed clean
