"""README name for the layer: ``from src.superrelora_linear import SuperReLoRALinear`` (= superrelora.linear)."""

from superrelora.linear import SuperReLoRALinear, partial_merge_layer, split_factors  # noqa: F401
