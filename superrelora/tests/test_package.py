"""Package surface: README file names import, analytic LoRA counts, the original helpers fixed.

    python -m pytest tests/test_package.py -q
"""

import subprocess
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig

import superrelora
from superrelora.model import SuperReLoRaModel, lora_param_count, trainable_parameters
from superrelora.utils import count_superrelora_params, load_checkpoint, save_checkpoint, scale_optimizer_state

ROOT = Path(__file__).resolve().parents[1]


def test_package_imports_with_version():
    assert superrelora.__version__.count(".") == 2


def test_readme_layout_imports_from_project_root():
    code = ("from src.superrelora_linear import SuperReLoRALinear; from src.superrelora_model import SuperReLoRaModel;"
            " from src.utils import count_superrelora_params; import peft; "
            "assert SuperReLoRALinear is peft.tuners.lora.Linear; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-1000:]


def test_analytic_lora_counts_smollm2_and_teenytinyllama():
    smollm2 = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    teeny = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                        num_attention_heads=12, num_key_value_heads=12)
    assert lora_param_count(smollm2, r=8) == 2_442_240
    assert lora_param_count(teeny, r=8) == 1_695_744
    assert lora_param_count(str(ROOT / "configs" / "llama_160m.json"), r=8) == 12 * 8 * (4 * 1536 + 3 * 2816)


def test_wrapper_trainable_count_is_analytic_and_only_adapters(tiny_base):
    expected = lora_param_count(tiny_base, r=4)
    wrapped = SuperReLoRaModel(tiny_base, r=4, alpha=8)
    assert trainable_parameters(wrapped) == expected == count_superrelora_params(wrapped.model)["lora"]
    assert all("lora_" in n for n, p in wrapped.named_parameters() if p.requires_grad)


def test_original_utils_fixed(tiny_base, tmp_path):
    wrapped = SuperReLoRaModel(tiny_base, r=4, alpha=8)
    counts = count_superrelora_params(wrapped.model)
    assert counts["layers"] == 14 and counts["base"] > 0
    opt = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad])
    wrapped(input_ids=torch.tensor([[3, 4, 5]]), labels=torch.tensor([[3, 4, 5]])).loss.backward()
    opt.step()
    p = next(p for p in wrapped.parameters() if p.requires_grad)
    m, step = opt.state[p]["exp_avg"], opt.state[p]["step"].clone()
    before = m.clone()
    scale_optimizer_state(opt, [p], 0.5)
    assert opt.state[p]["exp_avg"] is m and torch.equal(m, before * 0.5) and torch.equal(opt.state[p]["step"], step)
    save_checkpoint(wrapped, opt, 2, tmp_path / "c.pt")
    assert load_checkpoint(wrapped, opt, tmp_path / "c.pt") == 2
