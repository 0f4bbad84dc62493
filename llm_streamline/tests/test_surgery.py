"""Pruned-model assembly: index mapping, logits vs skipping layers, plain save/load.  python -m pytest tests/test_surgery.py -q"""

import torch
from helpers import byte_tokenizer, tiny_model, tiny_opt
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_streamline.adapters import causal_mask_4d
from llm_streamline.lightweight import build_lightweight
from llm_streamline.pipeline import RECORD, assemble, load_streamlined, save_output
from llm_streamline.surgery import count_params, drop_layers, pruned_config, streamline_keep, streamline_model


def skip_forward(model, ids, skip):
    """Reference: run the original Llama by hand, skipping the layers in ``skip``."""
    h = model.model.embed_tokens(ids)
    pos = torch.arange(ids.shape[1])[None]
    pe = model.model.rotary_emb(h, pos)
    mask = causal_mask_4d(None, ids.shape[0], ids.shape[1], h.dtype, h.device)
    for i, layer in enumerate(model.model.layers):
        if i not in skip:
            h = layer(h, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    return model.lm_head(model.model.norm(h))


def test_keep_indices():
    assert streamline_keep(10, 3, 4) == [0, 1, 2, 3, 8, 9]
    assert streamline_keep(10, 3, 4, k=2) == [0, 1, 2, 3, 4, 9]
    assert streamline_keep(10, 0, 9) == [0]


@torch.no_grad()
def test_untrained_pruned_logits_equal_original_with_layers_skipped():
    model = tiny_model(7)
    ids = torch.randint(0, 256, (2, 10))
    pruned = streamline_model(model, best=2, n=3)
    assert pruned.config.num_hidden_layers == 4 and len(pruned.model.layers) == 4
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2, 3]
    torch.testing.assert_close(pruned(ids).logits, skip_forward(model, ids, {3, 4, 5}))
    # and the original is untouched
    torch.testing.assert_close(model(ids).logits, skip_forward(model, ids, set()))


@torch.no_grad()
def test_cached_generation_matches_uncached_after_pruning():
    pruned = streamline_model(tiny_model(6), best=1, n=2)
    ids = torch.randint(0, 256, (1, 6))
    a = pruned.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
    b = pruned.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(a, b)


@torch.no_grad()
def test_replacement_weights_land_in_the_slot():
    model = tiny_model(6)
    mods = build_lightweight(model, "layer", best=1, k=2)
    with torch.no_grad():
        mods[1].mlp.up_proj.weight.add_(1.0)
    pruned = assemble(model, 1, 2, "layer", mods)
    torch.testing.assert_close(pruned.model.layers[2].mlp.up_proj.weight, mods[1].mlp.up_proj.weight)
    torch.testing.assert_close(pruned.model.layers[3].mlp.up_proj.weight, model.model.layers[5].mlp.up_proj.weight)


@torch.no_grad()
def test_save_load_round_trip_plain_hf_with_tokenizer(tmp_path):
    model = tiny_model(6, tie_word_embeddings=True)
    pruned = streamline_model(model, best=2, n=2)
    tok = byte_tokenizer()
    out = save_output(pruned, tok, str(tmp_path / "out"), {"best_layer": 2, "layer_intervals": 2})
    assert (out / RECORD).is_file() and (out / "tokenizer.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out)  # no custom code, no trust_remote_code
    assert loaded.config.num_hidden_layers == 4 and loaded.config.tie_word_embeddings
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 256, (2, 9))
    torch.testing.assert_close(loaded(ids).logits, pruned(ids).logits)
    assert AutoTokenizer.from_pretrained(out)("abc")["input_ids"] == tok("abc")["input_ids"]
    assert count_params(loaded) == count_params(model) - 2 * sum(p.numel() for p in model.model.layers[0].parameters())


@torch.no_grad()
def test_ffn_result_reloads_through_load_streamlined(tmp_path):
    from helpers import save_tiny

    base = save_tiny(tmp_path / "base", layers=5)
    model = AutoModelForCausalLM.from_pretrained(base)
    mods = build_lightweight(model, "ffn", best=1, seed=3)
    pruned = assemble(model, 1, 2, "ffn", mods)
    out = save_output(pruned, byte_tokenizer(), str(tmp_path / "ffn"),
                      {"lightweight": "ffn", "model_name": str(base), "best_layer": 1, "layer_intervals": 2}, "ffn", mods)
    assert not (out / "config.json").exists()  # never mistaken for a plain checkpoint
    loaded, _ = load_streamlined(str(out))
    ids = torch.randint(0, 256, (1, 7))
    torch.testing.assert_close(loaded(ids).logits, pruned(ids).logits)


def test_per_layer_config_lists_are_cut():
    from transformers import Qwen3Config

    cfg = Qwen3Config(num_hidden_layers=4, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, vocab_size=64)
    cfg.layer_types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    new = pruned_config(cfg, [0, 3])
    assert new.num_hidden_layers == 2 and new.layer_types == ["full_attention", "sliding_attention"]


@torch.no_grad()
def test_opt_pruning_keeps_project_in_out_and_matches_skip():
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
                    word_embed_proj_dim=16, max_position_embeddings=64, dropout=0.0)
    torch.manual_seed(0)
    model = OPTForCausalLM(cfg).eval()  # word_embed_proj_dim != hidden: project_in/out exist (OPT-350m style)
    pruned = drop_layers(model, [1, 2])
    torch.testing.assert_close(pruned.model.decoder.project_in.weight, model.model.decoder.project_in.weight)
    ids = torch.randint(0, 64, (1, 8))
    layers = model.model.decoder.layers
    model.model.decoder.layers = torch.nn.ModuleList([layers[0], layers[3]])
    model.config.num_hidden_layers = 2
    torch.testing.assert_close(pruned(ids, use_cache=False).logits, model(ids, use_cache=False).logits)


def test_opt_adapter_streamline():
    model = tiny_opt(4)
    pruned = streamline_model(model, best=1, n=2)
    assert pruned.config.num_hidden_layers == 2
    torch.testing.assert_close(pruned.model.decoder.layers[1].fc1.weight, model.model.decoder.layers[1].fc1.weight)
