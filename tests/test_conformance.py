"""Workspace conformance: layout, Makefile targets, env files, markers, and no imports between projects.

    python -m pytest tests -q      (stdlib + pytest only; `make test-root` runs it in shared_utils' env)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ["high_to_low", "superrelora", "llm_trm", "hier_bd3lm", "llm_streamline"]
PACKAGES = {p: p for p in PROJECTS}  # import name == folder name
REQUIRED_FILES = ["README.md", "requirements.txt", "environment.yml", "Makefile", "pyproject.toml"]
REQUIRED_TARGETS = ["setup", "test", "test-gpu", "smoke", "table"]
CONDA_NAMES = {"high_to_low": "reasoning_llm"}


def make_targets(makefile: Path) -> set[str]:
    text = makefile.read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))


def python_files(folder: Path):
    for path in folder.rglob("*.py"):
        if not any(part in {".venv", "runs", "__pycache__", "build"} for part in path.parts):
            yield path


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_root_layout():
    for name in ["Makefile", "README.md", "pyproject.toml", ".ci/run", "shared_utils", "tests"]:
        assert (ROOT / name).exists(), name
    assert (ROOT / ".ci/run").stat().st_mode & 0o111, ".ci/run must be executable"


@pytest.mark.parametrize("project", PROJECTS)
def test_project_has_required_files_and_targets(project):
    folder = ROOT / project
    for name in REQUIRED_FILES:
        assert (folder / name).is_file(), f"{project}/{name} missing"
    assert (folder / "tests").is_dir()
    assert (folder / "src" / PACKAGES[project] / "__init__.py").is_file(), "importable package with a distinct name"
    missing = set(REQUIRED_TARGETS) - make_targets(folder / "Makefile")
    assert not missing, f"{project}/Makefile lacks targets {sorted(missing)}"


@pytest.mark.parametrize("project", PROJECTS)
def test_env_files_agree(project):
    folder = ROOT / project
    reqs = folder.joinpath("requirements.txt").read_text().splitlines()
    assert "-e ../shared_utils" in reqs and "-e ." in reqs
    env = folder.joinpath("environment.yml").read_text()
    assert re.search(rf"^name:\s*{CONDA_NAMES.get(project, project)}\s*$", env, flags=re.M), "conda env name"
    assert "-r requirements.txt" in env, "environment.yml's pip section installs the same requirements"
    meta = tomllib.loads(folder.joinpath("pyproject.toml").read_text())
    assert meta["project"]["name"].replace("-", "_") == PACKAGES[project]
    assert "shared-utils" in meta["project"]["dependencies"]


@pytest.mark.parametrize("pyproject", ["pyproject.toml", "shared_utils/pyproject.toml"] + [f"{p}/pyproject.toml" for p in PROJECTS])
def test_markers_declared(pyproject):
    cfg = tomllib.loads((ROOT / pyproject).read_text())["tool"]["pytest"]["ini_options"]
    markers = " ".join(cfg["markers"])
    assert "gpu:" in markers and "slow:" in markers
    assert "--strict-markers" in cfg["addopts"]


@pytest.mark.parametrize("project", PROJECTS)
def test_default_tier_excludes_slow_and_gpu(project):
    text = (ROOT / project / "Makefile").read_text()
    test_rule = re.search(r"^test:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert test_rule and 'not gpu and not slow' in test_rule.group(1)


@pytest.mark.parametrize("project", PROJECTS)
def test_no_project_imports_another(project):
    others = {PACKAGES[p] for p in PROJECTS if p != project}
    for path in python_files(ROOT / project):
        bad = imported_top_levels(path) & others
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_shared_utils_imports_no_project():
    for path in python_files(ROOT / "shared_utils"):
        bad = imported_top_levels(path) & set(PACKAGES.values())
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_project_reaches_into_another_folder():
    """A project folder plus shared_utils/ must be enough: no path into a sibling project anywhere."""
    for project in PROJECTS:
        for path in (ROOT / project).rglob("*"):
            if path.suffix not in {".py", ".txt", ".toml", ".yml", ".yaml", ".sh", ".cfg"} and path.name != "Makefile":
                continue
            if any(part in {".venv", "runs", "__pycache__"} for part in path.parts):
                continue
            text = path.read_text(encoding="utf-8", errors="ignore")
            for other in PROJECTS:
                if other != project:
                    assert f"../{other}" not in text, f"{path.relative_to(ROOT)} refers to ../{other}"


def test_readme_quick_start_commands_are_make_targets():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*make ([\w-]+)\s*$", readme, flags=re.M)
    assert "demo" in commands and "test-all" in commands, "README quick start has `make demo` and `make test-all`"
    targets = make_targets(ROOT / "Makefile")
    for cmd in commands:
        assert cmd in targets, f"README says `make {cmd}` but the root Makefile has no such target"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    assert "make --no-print-directory test-all" in ci or "make test-all" in ci


def test_each_project_readme_lists_results_commands():
    for project in PROJECTS:
        readme = (ROOT / project / "README.md").read_text()
        assert "make setup" in readme, f"{project}/README.md says how to set up"
