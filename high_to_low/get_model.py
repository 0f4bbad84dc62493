"""The original repository's ``get_model.py`` (top level): the TurboConn model, thin over ``high_to_low.get_model``.

    from get_model import TurboConnLM, build_model, get_model, preset_bridges
    model, tokenizer = get_model("smollm2-135m", our_method=True, group_size=4)
"""

from high_to_low.get_model import (  # noqa: F401  (re-exported for the original's imports)
    IMPROVED_RANK,
    LORA_SCALE,
    LORA_TARGETS,
    MULTIPLIER_SCALE,
    TINY_MODEL,
    TRANSFORMER_RANK,
    GroupedState,
    LoraLinear,
    TurboConnLM,
    add_lora,
    build_model,
    load_base,
    matched_transformer_rank,
    parse_bridges,
    preset_bridges,
    select_trainable,
    tiny_config,
)


def get_model(model_name: str, our_method: bool = True, group_size: int = 4, multiplier: float = 100,
              rank: int | None = None, bridges=None, seed: int = 42):
    """(TurboConnLM, tokenizer): LoRA + the preset bridges (``our_method``) or the parameter-matched LoRA baseline,
    exactly as train.py builds them (``tiny`` trains all weights from scratch)."""
    import argparse

    from high_to_low.training import base_config, resolve_config

    if bridges is not None and not isinstance(bridges, str):  # [(s, d), ...] -> "s:d,..."
        bridges = ",".join(f"{s}:{d}" for s, d in bridges)
    args = argparse.Namespace(model_name=model_name, our_method=our_method, group_size=group_size,
                              multiplier=multiplier, rank=rank, bridges=bridges, seed=seed, full_finetune=None,
                              transformer_rank=None, tiny_layers=6, batch_size=1, lr=3e-5, warmup_steps=100,
                              period=900, split_batch_into=1, num_train=None, seq_len=70, min_len=1, max_n=30,
                              data_dir=None, dataset_name="gsm8k", total_epochs=1, save_interval=1, max_steps=None,
                              gpu_memory_limit="35GiB")
    config = base_config(model_name)
    return build_model(resolve_config(args, config.num_hidden_layers, config))
