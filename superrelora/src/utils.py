"""README name for the helpers: ``from src.utils import count_superrelora_params`` (= superrelora.utils)."""

from superrelora.utils import (  # noqa: F401
    count_superrelora_params,
    get_model_size,
    get_trainable_params,
    load_checkpoint,
    save_checkpoint,
    scale_optimizer_state,
)
