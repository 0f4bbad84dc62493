"""A byte-level tokenizer for models built from a config file (tests, ``configs/tiny_llama.json``): no download.

ids = byte + 3; 0 = pad, 1 = bos, 2 = eos. Vocabulary 259 (tiny configs use vocab_size >= 259).
"""

from __future__ import annotations


class ByteTokenizer:
    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    vocab_size = 259
    pad_token = "<pad>"
    eos_token = "<eos>"

    def __call__(self, text: str, truncation: bool = False, max_length: int | None = None, padding=False, **_):
        ids = [b + 3 for b in text.encode("utf-8")]
        if truncation and max_length is not None:
            ids = ids[:max_length]
        mask = [1] * len(ids)
        if padding == "max_length" and max_length is not None:
            mask += [0] * (max_length - len(ids))
            ids += [self.pad_token_id] * (max_length - len(ids))
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")
