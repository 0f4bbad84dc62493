"""Is the Hugging Face Hub reachable? Fail fast, with the offline alternative, when it is not.

``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` for datasets) forces offline.
Otherwise one TCP connection to the Hub endpoint decides, with a short timeout, and the answer is cached
for the process. A resource already in the local HF cache is usable offline, so it is not refused.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from shared_utils.errors import OfflineError

_TRUE = {"1", "true", "yes", "on"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_forced(kind: str = "model") -> bool:
    """True when the environment says offline for this kind of resource ("model" or "dataset")."""
    names = ["HF_HUB_OFFLINE"] + (["TRANSFORMERS_OFFLINE"] if kind == "model" else ["HF_DATASETS_OFFLINE"])
    return any(_env_true(n) for n in names)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the Hub endpoint (HF_ENDPOINT or huggingface.co:443)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_offline(kind: str = "model") -> bool:
    return offline_forced(kind) or not hub_reachable()


def in_hf_cache(repo_id: str, filename: str = "config.json", repo_type: str = "model") -> bool:
    """Whether ``filename`` of ``repo_id`` is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    hit = try_to_load_from_cache(repo_id, filename, repo_type=repo_type)
    return isinstance(hit, str)


def require_hub(name: str, kind: str = "model", alternative: str = "", cache_file: str | None = None) -> None:
    """Raise OfflineError (one line) if ``name`` must come from the Hub and the Hub can't be reached.

    Args:
        name: the Hub id that was asked for.
        kind: "model" or "dataset".
        alternative: what to use instead offline (an embedded default or a local path option).
        cache_file: a file whose presence in the local HF cache makes the resource usable offline.
    """
    if cache_file and in_hf_cache(name, cache_file, repo_type=kind):
        return
    if not is_offline(kind):
        return
    why = "HF_HUB_OFFLINE is set" if offline_forced(kind) else "the Hub is unreachable"
    hint = f"; offline, use {alternative}" if alternative else ""
    raise OfflineError(f"{kind} '{name}' needs the Hugging Face Hub and {why}{hint}")
