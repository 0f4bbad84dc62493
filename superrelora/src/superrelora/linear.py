"""``SuperReLoRALinear``: peft's LoRA ``Linear`` layer (forward y = W x + b + s * B A x, A kaiming, B = 0) plus the
per-layer partial merge. No hand-written LoRA forward: the layer *is* peft's; what SuperReLoRA adds is the merge.

    from superrelora.linear import SuperReLoRALinear, partial_merge_layer
"""

from __future__ import annotations

from peft.tuners.lora import Linear as SuperReLoRALinear

from superrelora.merge import ADAPTER, adjust_moments, merge_layer, split_factors


def partial_merge_layer(layer: SuperReLoRALinear, alpha: float, split: str = "sqrt", optimizer=None,
                        moments: str = "consistent", adapter: str = ADAPTER) -> float:
    """The original ``SuperReLoRALinear.partial_merge(alpha, optimizer)``, function-preserving by default.

    Returns ||s B A||_F before the merge (the original's "merge norm").
    """
    norm, c_a, c_b = merge_layer(layer, alpha, split, adapter)
    adjust_moments(optimizer, layer.lora_A[adapter].weight, moments, alpha, c_other=c_b)
    adjust_moments(optimizer, layer.lora_B[adapter].weight, moments, alpha, c_other=c_a)
    return norm


__all__ = ["SuperReLoRALinear", "partial_merge_layer", "split_factors"]
