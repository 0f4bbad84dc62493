"""A byte-level fast tokenizer with a ChatML template, built in-process (no files), for tests.

Vocabulary: the 256 byte symbols (ids 0..255), ``<|im_end|>`` = 256 (eos = pad, as in SmolLM2) and
``<|im_start|>`` = 257. Pair it with ``shared_utils.models.tiny_llama(**TINY_LLAMA_OVERRIDES)``.

    python -c "from llm_trm.tiny import tiny_tokenizer; print(tiny_tokenizer()('hi').input_ids)"
"""

from __future__ import annotations

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_LLAMA_OVERRIDES = dict(vocab_size=258, pad_token_id=256, eos_token_id=256, bos_token_id=257,
                            tie_word_embeddings=True)


def tiny_tokenizer():
    """PreTrainedTokenizerFast: one token per byte, offsets supported, ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    assert tok.convert_tokens_to_ids("<|im_end|>") == 256, "special-token ids drifted"
    return tok
