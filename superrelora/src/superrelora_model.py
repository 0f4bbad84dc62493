"""README name for the model wrapper: ``from src.superrelora_model import SuperReLoRaModel`` (= superrelora.model)."""

from superrelora.model import SuperReLoRaModel, build_model, load_base_model, lora_param_count  # noqa: F401
