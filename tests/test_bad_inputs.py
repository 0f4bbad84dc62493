"""Bad-input corpus: every case of tests/bad_inputs/cases_<project>.py, run the way a new user would run it.

    shared_utils/.venv/bin/python -m pytest tests/test_bad_inputs.py -q      (= `make test-bad-inputs`)

`make test-all` runs this file as its own step after the projects (their environments must exist); `make
test-root` leaves it out. The case format is in tests/bad_inputs/__init__.py. A case passes when the command exits
non-zero, prints no traceback, and its stderr names the problem (`expect`, case-insensitive). Cases of a project
whose .venv is missing are skipped. The selected cases run in a pool of BAD_INPUTS_WORKERS (default 2) processes,
each with a BAD_INPUTS_TIMEOUT (default 60 s); each test waits for its own case; a case slower than 20 s is
reported as a warning.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = Path(os.environ.get("BAD_INPUTS_DIR", Path(__file__).resolve().parent / "bad_inputs"))
TIMEOUT_S = float(os.environ.get("BAD_INPUTS_TIMEOUT", "60"))
SLOW_S = 20  # a case slower than this is reported as a warning (it probably loads torch/transformers first)
MIN_TOTAL, MIN_PER_PROJECT = 40, 8
CASE_KEYS = {"id", "cwd", "argv", "expect", "setup", "env"}


def _workspace():
    spec = importlib.util.spec_from_file_location("_workspace_driver", ROOT / "tools" / "workspace.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


_WS = _workspace()
PROJECTS = list(_WS.PROJECTS)
OFFLINE_ENV = {**_WS.OFFLINE_ENV, "OMP_NUM_THREADS": "1"}


def load_case_files(folder: Path) -> tuple[dict, dict]:
    """{project: module} for every cases_<project>.py, and {file name: error} for files that do not import."""
    modules, errors = {}, {}
    for path in sorted(folder.glob("cases_*.py")):
        project = path.stem[len("cases_"):]
        try:
            spec = importlib.util.spec_from_file_location(f"_bad_inputs_{project}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
            if not isinstance(getattr(mod, "CASES", None), list):
                raise TypeError("defines no CASES list")
            modules[project] = mod
        except Exception as exc:  # a broken case file is one failing test, not a collection error
            errors[path.name] = f"{type(exc).__name__}: {exc}"
    return modules, errors


def case_problems(project: str, case, module=None) -> list[str]:
    """What is wrong with a case's definition (empty when it is well formed)."""
    if not isinstance(case, dict):
        return [f"a case must be a dict, got {type(case).__name__}"]
    out = [f"unknown key {k!r}" for k in sorted(set(case) - CASE_KEYS)]
    out += [f"missing key {k!r}" for k in ("id", "cwd", "argv", "expect") if k not in case]
    if not isinstance(case.get("id", ""), str) or not re.fullmatch(r"[\w.-]+", case.get("id") or "-"):
        out.append("id must be a non-empty string of letters, digits, '_', '.', '-'")
    if "cwd" in case and (not isinstance(case["cwd"], str) or Path(case["cwd"]).parts[:1] != (project,)):
        out.append(f"cwd must be {project!r} (or a folder inside it), got {case['cwd']!r}")
    argv = case.get("argv")
    if "argv" in case and (not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)):
        out.append("argv must be a non-empty list of strings")
    if "expect" in case and (not isinstance(case["expect"], str) or not case["expect"].strip()):
        out.append("expect must be a non-empty string")
    setup = case.get("setup")
    if setup is not None and (not isinstance(setup, str) or not callable(getattr(module, setup, None))):
        out.append(f"setup {setup!r} is not the name of a function in cases_{project}.py")
    if case.get("env") is not None and not (isinstance(case["env"], dict)
                                            and all(isinstance(v, str) for v in case["env"].values())):
        out.append("env must be a dict of strings")
    return out


def outcome_problems(case: dict, rc: int | None, stderr: str) -> list[str]:
    """Why a finished case does not pass (empty when it passes)."""
    out = []
    if rc is None:
        out.append(f"did not finish within {TIMEOUT_S} s (a bad input must fail before any expensive work)")
    elif rc == 0:
        out.append("exit code 0 (a bad input must exit non-zero)")
    if "Traceback" in stderr:
        out.append("traceback on stderr (a bad input must give one clear line)")
    if case["expect"].lower() not in stderr.lower():
        out.append(f"stderr does not contain {case['expect']!r}")
    return out


def build_argv(case: dict, module, tmp_path: Path) -> list[str]:
    """argv with every "{placeholder}" filled: {tmp} plus whatever the case's setup function returns."""
    values = {"tmp": tmp_path}
    if case.get("setup"):
        values.update(getattr(module, case["setup"])(tmp_path) or {})
    argv = []
    for arg in case["argv"]:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", str(value))
        argv.append(arg)
    return argv


def run_case(python: str, case: dict, argv: list[str], cwd: Path, timeout: float = TIMEOUT_S) -> dict:
    """Run one case; {"rc" (None on timeout), "stderr", "seconds", "cmd"}."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTEST_ADDOPTS", "PYTHONPATH"}}
    env.update(OFFLINE_ENV)
    env.update(case.get("env") or {})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([python, *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr or ""
        rc, stderr = None, err.decode(errors="replace") if isinstance(err, bytes) else err
    return {"rc": rc, "stderr": stderr, "seconds": time.perf_counter() - t0, "cmd": " ".join([python, *argv])}


MODULES, LOAD_ERRORS = load_case_files(CASES_DIR)


def _case_id(i: int, case) -> str:
    return str(case.get("id")) if isinstance(case, dict) and case.get("id") else f"#{i}"


CASE_BY_KEY = {f"{project}:{_case_id(i, case)}": (project, case, mod)
               for project, mod in MODULES.items() for i, case in enumerate(mod.CASES)}
KEYS = [f"{project}:{_case_id(i, case)}" for project, mod in MODULES.items() for i, case in enumerate(mod.CASES)]
def _venv_python(project: str) -> Path:
    return ROOT / project / ".venv" / "bin" / "python"


@pytest.fixture(scope="session")
def outcomes(request, tmp_path_factory) -> dict[str, Future]:
    """Start every selected, well-formed case whose project has a .venv; tests wait on their own future."""
    selected = [item.callspec.params["key"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_bad_input" and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=max(1, int(os.environ.get("BAD_INPUTS_WORKERS", "2"))))
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    futures = {}
    for key in selected:
        project, case, mod = CASE_BY_KEY[key]
        if case_problems(project, case, mod) or not _venv_python(project).exists():
            continue
        tmp = tmp_path_factory.mktemp(re.sub(r"\W", "_", key)[:60])
        try:
            argv = build_argv(case, mod, tmp)
        except Exception as exc:
            fut: Future = Future()
            fut.set_exception(exc)
            futures[key] = fut
            continue
        futures[key] = pool.submit(run_case, str(_venv_python(project)), case, argv, ROOT / case["cwd"])
    return futures


def test_case_files_load():
    assert not LOAD_ERRORS, f"case files that do not load: {LOAD_ERRORS}"


def test_case_ids_unique():
    dupes = sorted({k for k in KEYS if KEYS.count(k) > 1})
    assert not dupes, f"duplicate case ids: {dupes}"


def test_corpus_size():
    missing = [p for p in PROJECTS if not (CASES_DIR / f"cases_{p}.py").exists()]
    if missing:
        pytest.skip(f"no cases file yet for {missing}; the size check runs once all {len(PROJECTS)} exist")
    counts = {p: len(MODULES[p].CASES) if p in MODULES else 0 for p in PROJECTS}
    few = {p: n for p, n in counts.items() if n < MIN_PER_PROJECT}
    assert sum(counts.values()) >= MIN_TOTAL and not few, (
        f"bad-input corpus: {sum(counts.values())} cases {counts}; needs >= {MIN_TOTAL} in all and "
        f">= {MIN_PER_PROJECT} per project")


@pytest.mark.parametrize("key", KEYS)
def test_bad_input(key, outcomes):
    project, case, mod = CASE_BY_KEY[key]
    problems = case_problems(project, case, mod)
    assert not problems, f"{key}: malformed case: {problems}"
    if not _venv_python(project).exists():
        pytest.skip(f"{project}/.venv missing (make -C {project} setup)")
    out = outcomes[key].result()
    if out["seconds"] > SLOW_S:
        warnings.warn(f"bad-input case {key} took {out['seconds']:.0f} s (load average {os.getloadavg()[0]:.1f}): "
                      "check the input before importing torch/transformers or loading a model", stacklevel=1)
    problems = outcome_problems(case, out["rc"], out["stderr"])
    tail = "\n".join(out["stderr"].strip().splitlines()[-15:])
    assert not problems, (f"{key}: {'; '.join(problems)}\n  cwd: {case['cwd']}\n  $ {out['cmd']}\n  rc={out['rc']} "
                          f"({out['seconds']:.1f}s), stderr tail:\n{tail}")


# --- the runner's own checks (no project environment needed) ---

def test_outcome_problems_judges_each_rule():
    case = {"expect": "Not Found"}
    assert outcome_problems(case, 2, "error: config x.yaml not found\n") == []
    assert any("exit code 0" in p for p in outcome_problems(case, 0, "error: not found"))
    assert any("traceback" in p for p in outcome_problems(case, 1, "Traceback (most recent call last):\nnot found"))
    assert any("does not contain" in p for p in outcome_problems(case, 2, "error: something else"))
    assert any("did not finish" in p for p in outcome_problems(case, None, "not found"))


def test_case_problems_catches_malformed_cases():
    good = {"id": "a-1", "cwd": "llm_trm", "argv": ["x.py"], "expect": "error"}
    assert case_problems("llm_trm", good) == []
    assert case_problems("llm_trm", {**good, "cwd": "superrelora"})
    assert case_problems("llm_trm", {**good, "argv": "x.py --bad"})
    assert case_problems("llm_trm", {**good, "expect": " "})
    assert case_problems("llm_trm", {**good, "setup": "no_such_function"}, module=object())
    assert case_problems("llm_trm", {**good, "colour": "red"})
    assert case_problems("llm_trm", {k: v for k, v in good.items() if k != "expect"})


def test_run_case_end_to_end(tmp_path):
    """A real subprocess: setup placeholders are filled, rc/stderr are captured, a timeout is reported as such."""
    class Mod:
        @staticmethod
        def make_file(tmp):
            bad = tmp / "bad.json"
            bad.write_text("{not json")
            return {"bad": bad}

    script = "import sys, json, pathlib; p = sys.argv[1]; json.loads(pathlib.Path(p).read_text())"
    case = {"id": "x", "cwd": ".", "argv": ["-c", script, "{bad}"], "expect": "error", "setup": "make_file"}
    argv = build_argv(case, Mod, tmp_path)
    assert argv[-1] == str(tmp_path / "bad.json")
    out = run_case(sys.executable, case, argv, tmp_path)
    problems = outcome_problems(case, out["rc"], out["stderr"])
    assert out["rc"] == 1 and any("traceback" in p for p in problems)  # an unhandled error is caught by the runner

    clean = {**case, "setup": None, "argv": ["-c", "import sys; sys.exit('error: ' + sys.argv[1] + ' is not JSON')", "{tmp}/f"]}
    out = run_case(sys.executable, clean, build_argv(clean, None, tmp_path), tmp_path)
    assert out["rc"] == 1 and outcome_problems(clean, out["rc"], out["stderr"]) == []
    assert f"{tmp_path}/f is not JSON" in out["stderr"]

    slow = {**case, "argv": ["-c", "import time; time.sleep(5)"]}
    out = run_case(sys.executable, slow, slow["argv"], tmp_path, timeout=0.5)
    assert out["rc"] is None and any("did not finish" in p for p in outcome_problems(slow, None, out["stderr"]))
