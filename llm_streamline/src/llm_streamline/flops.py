"""Model FLOPs of SmolLM2-like decoders: forward of a (pruned) model, the speed-up ceiling, training steps.

Counted: every ``nn.Linear`` of a decoder layer (2 FLOPs per weight per token), the attention scores and the
weighted sum over the context (2 * 2 * heads * head_dim per token per context position; causal, so a prefill
token at position t sees t + 1 positions), and the lm_head (2 * d * V per token: Hugging Face causal LMs compute
logits for every position). Not counted: the embedding lookup (no FLOPs), norms, RoPE, activations, softmax
(elementwise, < 1% here).

The ceiling of a pruned model's speed-up is ``F(L) / F(L - n)`` at the same batch shape. ``L / (L - n)`` assumes
time proportional to the layer count and forgets the embedding, final norm and lm_head that run in both models:
for SmolLM2-135M (lm_head 49152 x 576, about a fifth of the per-token FLOPs) and n = 8 the FLOP ceiling at
T = 128 is about 1.27, not 30 / 22 = 1.364.
"""

from __future__ import annotations

from torch import nn

from llm_streamline.adapters import get_adapter


def linear_params(module: nn.Module) -> int:
    """Weights of every ``nn.Linear`` inside ``module`` (biases ignored: < 0.1% of the FLOPs)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def attention_dim(config) -> int:
    heads = config.num_attention_heads
    return heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)


def context_positions(new_tokens: int, past: int = 0) -> int:
    """Sum over the new tokens of how many positions each attends to (causal)."""
    return new_tokens * past + new_tokens * (new_tokens + 1) // 2


def layer_forward_flops(model, batch: int, new_tokens: int, past: int = 0) -> int:
    """Forward FLOPs of one decoder layer (the first one; all layers have the same shape here)."""
    layer = get_adapter(model).layers(model)[0]
    dense = 2 * linear_params(layer) * batch * new_tokens
    attn = 4 * attention_dim(model.config) * batch * context_positions(new_tokens, past)
    return dense + attn


def head_forward_flops(model, batch: int, new_tokens: int) -> int:
    """lm_head FLOPs (the embedding lookup and the final norm are not counted)."""
    return 2 * model.get_output_embeddings().weight.numel() * batch * new_tokens


def forward_flops(model, n_layers: int, batch: int, new_tokens: int, past: int = 0) -> int:
    """Forward FLOPs of a model like ``model`` with ``n_layers`` decoder layers."""
    return n_layers * layer_forward_flops(model, batch, new_tokens, past) + head_forward_flops(model, batch, new_tokens)


def flop_ceiling(model, n_layers: int, removed: int, batch: int, new_tokens: int, past: int = 0) -> float:
    """Best possible speed-up of removing ``removed`` of ``n_layers`` layers: F(L) / F(L - n) at this shape."""
    return forward_flops(model, n_layers, batch, new_tokens, past) / forward_flops(
        model, n_layers - removed, batch, new_tokens, past)


def mse_step_flops(model, batch: int, seq_len: int, k: int = 1) -> int:
    """MSE training step of k lightweight decoder layers: forward + backward = 3 x forward (the usual 6 N T)."""
    return 3 * k * layer_forward_flops(model, batch, seq_len)


def llm_step_flops(pruned, best: int, batch: int, seq_len: int, k: int = 1) -> int:
    """LLM-loss step of the pruned model: forward of everything; backward = input gradients (1 x forward) through
    the lm_head and every layer above the trainable slot, and input + weight gradients (2 x forward) of the k
    trainable layers; nothing below ``best`` (frozen, no gradient needed)."""
    n_layers = len(get_adapter(pruned).layers(pruned))
    layer = layer_forward_flops(pruned, batch, seq_len)
    head = head_forward_flops(pruned, batch, seq_len)
    above = n_layers - best - k
    return (n_layers * layer + head) + (head + above * layer) + 2 * k * layer
