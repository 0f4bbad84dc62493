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

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

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
