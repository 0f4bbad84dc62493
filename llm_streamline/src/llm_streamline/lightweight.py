"""The lightweight network that replaces the removed block (spec 2.4).

- ``layer`` (released code, default): one decoder layer initialised from the first layer of the block; with
  ``num_lightweight_layers = k`` the first k layers of the block (the README's two-layer Llama-3.1-5.4B).
- ``swiglu``: the block's first layer with its attention output projection zeroed and frozen, so only the
  pre-norm SwiGLU MLP (with its residual) is active and trained. It is still an ordinary decoder layer, so the
  result loads with ``AutoModelForCausalLM``. Needs a gated-MLP (Llama-like) model.
- ``ffn``: the authors' later MLP (examples/mlp_mseloss_train_without_memory_issue): Linear(d, 4d) -> ReLU ->
  Linear(4d, d), biases, default init, **no residual**. No Hugging Face layer class expresses it, so an ffn result
  is saved as weights + streamline.json and loaded with :func:`llm_streamline.pipeline.load_streamlined`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from llm_streamline.adapters import get_adapter
from shared_utils.errors import UserError


class FFN(nn.Module):
    """Linear(d, 4d) -> ReLU -> Linear(4d, d); called like a decoder layer (extra arguments ignored)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, hidden_states, *args, **kwargs):
        return self.fc2(torch.relu(self.fc1(hidden_states)))


def build_lightweight(model, kind: str, best: int, k: int = 1, seed: int = 0) -> nn.ModuleList:
    """k lightweight modules for the block starting at ``best`` (copies: the original model is left untouched)."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    if kind == "layer":
        return nn.ModuleList(copy.deepcopy(layers[best + i]) for i in range(k))
    if kind == "swiglu":
        if not adapter.has_gated_mlp:
            raise UserError(f"--lightweight swiglu needs a gated-MLP (Llama-like) model, not {model.config.model_type}")
        out = nn.ModuleList(copy.deepcopy(layers[best + i]) for i in range(k))
        for layer in out:
            proj = adapter.attention_out_proj(layer)
            with torch.no_grad():
                proj.weight.zero_()
                if proj.bias is not None:
                    proj.bias.zero_()
        return out
    if kind == "ffn":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ffn = FFN(model.config.hidden_size).to(next(model.parameters()).dtype)
        return nn.ModuleList([ffn])
    raise UserError(f"unknown lightweight network '{kind}' (layer, swiglu, ffn)")


def trainable_parameters(modules: nn.ModuleList, kind: str, model_type_adapter) -> list[nn.Parameter]:
    """Parameters to train: everything of the lightweight modules, except the frozen attention of ``swiglu``."""
    if kind != "swiglu":
        return [p for p in modules.parameters()]
    params = []
    for layer in modules:
        for sub in model_type_adapter.mlp_modules(layer):
            params.extend(sub.parameters())
    return params


def run_lightweight(model, modules: nn.ModuleList, kind: str, hidden: torch.Tensor, mask: torch.Tensor | None):
    """Run the lightweight modules standalone (causal mask + RoPE for decoder layers)."""
    if kind == "ffn":
        return modules[0](hidden)
    adapter = get_adapter(model)
    for layer in modules:
        hidden = adapter.run_layer(model, layer, hidden, mask)
    return hidden
