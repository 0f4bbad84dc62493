"""Reproducibility plumbing: seeding, atomic writes, self-describing run directories, loss plots.

A run directory holds ``config.json`` (the resolved config), ``meta.json`` (workspace git SHA and dirty flag,
package versions, device, seed, command line) and ``metrics.jsonl`` (one JSON object per logged step),
written whether or not wandb is used.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

PACKAGES = (
    "torch", "transformers", "peft", "accelerate", "datasets", "lm_eval", "gguf", "numpy", "vllm", "deepspeed",
    "shared-utils",
)


def seed_everything(seed: int, deterministic: bool = False, rank: int = 0) -> int:
    """Seed python, numpy and torch with ``seed + rank``; optionally ask torch for deterministic kernels."""
    import numpy as np
    import torch

    s = int(seed) + int(rank)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(s)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return s


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and OMP/MKL env for child processes); ``None`` or 0: all cores.

    On a loaded 2-core machine one thread per process is often faster than two that fight each other; tables
    that run several jobs at once set 1. Returns the number now in use.
    """
    import torch

    n = int(n or os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    return torch.get_num_threads()


def check_output_path(path: str | Path, flag: str = "--output_dir", kind: str = "dir") -> Path:
    """Refuse (UserError, one line) an output location that cannot be created: an existing file where a directory
    is wanted (``kind="dir"``), an existing directory where a file is wanted (``kind="file"``), or a path below
    an existing file. Call it before any expensive work. Returns the path."""
    from shared_utils.errors import UserError

    path = Path(path).expanduser()
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', got {kind!r}")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is an existing file, not a directory")
    if kind == "file" and path.is_dir():
        raise UserError(f"{flag} {path} is an existing directory, not a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, so nothing can be written below it")
            if not os.access(parent, os.W_OK):
                raise UserError(f"{flag} {path}: {parent} is not writable")
            break
    return path


def check_resume_config(saved: dict, new: dict, keys: Iterable[str] | None = None, what: str = "checkpoint") -> None:
    """Refuse a resume whose settings differ from the checkpoint's saved config.

    Compares ``keys`` (default: every key present in either dict; dotted keys reach into nested dicts) and raises
    one UserError naming each differing key with both values, so the run never continues under silently changed
    settings.
    """
    from shared_utils.errors import UserError

    missing = object()

    def get(d: dict, key: str):
        cur: Any = d
        for part in key.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return missing
            cur = cur[part]
        return cur

    # compare as JSON would store them: tuples (also nested) become lists, so a saved [[1, 0]] equals [(1, 0)]
    saved, new = json.loads(json.dumps(saved, default=_json_default)), json.loads(json.dumps(new, default=_json_default))
    names = list(keys) if keys is not None else sorted(set(saved) | set(new))
    diffs = []
    for k in names:
        a, b = get(saved, k), get(new, k)
        if a != b:
            show = lambda v: "<absent>" if v is missing else repr(v)  # noqa: E731
            diffs.append(f"{k}: {what} has {show(a)}, this run has {show(b)}")
    if diffs:
        raise UserError(f"cannot resume: settings differ from the {what}'s config ({'; '.join(diffs)}); "
                        f"use the same settings or a new output directory")


def _existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is an existing file, else one UserError line saying what it is instead."""
    from shared_utils.errors import UserError

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file")
    return path


def load_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing, unreadable or malformed file into one UserError line."""
    from shared_utils.errors import UserError

    path = _existing_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def load_torch_file(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu",
                    weights_only: bool = True) -> Any:
    """``torch.load`` (or safetensors for ``.safetensors``) that reports a missing, truncated or corrupt file as
    one UserError line instead of an unpickling traceback."""
    from shared_utils.errors import UserError

    path = _existing_file(path, what)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device=str(map_location))
        import torch

        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # unpickling / zip / safetensors header errors all mean a corrupt file
        msg = " ".join(str(exc).split())[:160]
        raise UserError(f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {msg})") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temp file + rename, so a crash never leaves a half-written checkpoint."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory in a temp sibling and move it over ``path`` only if the block finishes.

    ``with atomic_dir(out) as tmp: <write files into tmp>`` -- on an exception the old ``path`` (if any) is left
    untouched and the temp directory is removed, so a crash never leaves a half-written checkpoint directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return str(obj)


def git_info(path: str | Path = ".") -> dict:
    """Workspace git SHA and dirty flag (``None`` outside a checkout)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10)

    try:
        sha = run("rev-parse", "HEAD")
        if sha.returncode != 0:
            return {"git_sha": None, "git_dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return {"git_sha": sha.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def package_versions(names: Iterable[str] = PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_info() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def run_meta(seed: int | None = None, extra: dict | None = None) -> dict:
    meta = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "seed": seed,
        **git_info(Path(__file__).resolve().parent),
        "packages": package_versions(),
        "device": device_info(),
    }
    meta.update(extra or {})
    return meta


class RunDir:
    """A self-describing run directory: config.json, meta.json, metrics.jsonl (+ whatever the run adds)."""

    def __init__(self, path: str | Path, fresh: bool = False):
        """``fresh=True`` starts a new run in an existing directory: the old metrics.jsonl is removed (a resumed
        run keeps it and appends)."""
        self.path = check_output_path(path, "run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.metrics_path.unlink(missing_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: Any, name: str = "config.json") -> Path:
        return atomic_write_json(self.path / name, config)

    def write_meta(self, seed: int | None = None, **extra) -> Path:
        return atomic_write_json(self.path / "meta.json", run_meta(seed, extra))

    def log(self, step: int | None = None, **metrics) -> dict:
        """Append one JSON line (flushed and fsynced) with ``step`` and the given metrics."""
        row = {"step": step, **metrics} if step is not None else dict(metrics)
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return row

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics.jsonl file; a torn last line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_loss_curve(
    metrics_path: str | Path | Iterable[tuple[str, str | Path]],
    out_png: str | Path,
    keys: Iterable[str] = ("loss",),
    x_key: str = "step",
    title: str | None = None,
    logy: bool = False,
) -> Path:
    """Plot ``keys`` against ``x_key`` from one metrics.jsonl, or from several as ``[(label, path), ...]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [("", metrics_path)] if isinstance(metrics_path, (str, Path)) else list(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = 0
    for label, path in sources:
        rows = read_metrics(path)
        for key in keys:
            pts = [(r[x_key], r[key]) for r in rows if key in r and x_key in r and r[key] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=" ".join(s for s in (label, key) if s))
                drawn += 1
    ax.set_xlabel(x_key)
    ax.set_ylabel(", ".join(keys))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if drawn:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
