"""Frozen-LLM hidden states: last layer (post final norm), computed once per model + data and cached on disk.

``hidden_states[-1]`` of a HF causal LM is the output after the final RMSNorm (transformers replaces the
last recorded state with ``last_hidden_state``), so ``lm_head(h)`` gives the logits exactly. We call the
base model (``model.model``) when logits are not needed, which skips the 28M-parameter head.

    python -m pytest tests/test_hidden.py -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared_utils.runs import atomic_torch_save


def base_model(model):
    """The transformer body of a causal LM (``model.model`` for Llama-style models)."""
    return getattr(model, "model", model)


@torch.no_grad()
def last_layer_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, D] fp32 last-layer states (== ``output_hidden_states=True`` ``hidden_states[-1]``)."""
    out = base_model(model)(input_ids=input_ids, attention_mask=attention_mask)
    return out.last_hidden_state.float()


def tokenize_batch(tokenizer, texts: list[str], max_length: int, device="cpu") -> dict[str, torch.Tensor]:
    """Right-padded to the longest row (truncated at ``max_length``); padding is masked, not trained on."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt",
                    add_special_tokens=False)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def cache_key(model_name: str, texts: list[str], max_length: int, extra: str = "") -> str:
    h = hashlib.sha256(json.dumps([model_name, max_length, extra, texts]).encode("utf-8"))
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_hidden(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 8,
                   device="cpu", desc: str = "hidden states") -> dict[str, torch.Tensor]:
    """Run the frozen LLM over ``texts``; returns {"hidden": [N, max_len, D], "mask": [N, max_len]}.

    Rows are processed longest-first so each batch pads little; outputs keep the input order.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    d = model.config.hidden_size
    hidden = torch.zeros(len(texts), max_length, d)
    mask = torch.zeros(len(texts), max_length, dtype=torch.long)
    width = 0
    for s in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[s: s + batch_size]
        batch = tokenize_batch(tokenizer, [texts[i] for i in idx], max_length, device)
        h = last_layer_states(model, **batch).cpu()
        L = h.shape[1]
        width = max(width, L)
        hidden[idx, :L] = h * batch["attention_mask"].cpu().unsqueeze(-1)
        mask[idx, :L] = batch["attention_mask"].cpu()
    return {"hidden": hidden[:, :width].contiguous(), "mask": mask[:, :width].contiguous()}


def cached_hidden(model_name: str, model_loader, tokenizer, texts: list[str], max_length: int,
                  cache_dir: str | Path | None, batch_size: int = 8, device="cpu") -> dict[str, torch.Tensor]:
    """:func:`compute_hidden`, memoised in ``cache_dir/<key>.pt`` (key = model + texts + max_length).

    ``model_loader`` is called only on a cache miss, so a warm cache never loads the LLM.
    """
    path = Path(cache_dir) / f"{cache_key(model_name, texts, max_length)}.pt" if cache_dir else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    out = compute_hidden(model_loader(), tokenizer, texts, max_length, batch_size, device)
    if path is not None:
        atomic_torch_save(out, path)
    return out


class PrefixCache:
    """Keys/values of a prefix shared by every row (the chat template's system turn), computed once.

    ``states(ids, mask)`` runs only the suffixes ``ids`` [B, Ls] (right-padded) on top of the cached prefix and
    returns their last-layer states [B, Ls, D], equal to the matching rows of a full forward (tested), at
    about (P + Ls) / Ls less cost for a prefix of P tokens.
    """

    def __init__(self, model, prefix_ids: list[int]):
        self.model, self.prefix_ids = model, list(prefix_ids)
        self.cache = None
        if self.prefix_ids:
            dev = next(model.parameters()).device
            with torch.no_grad():
                out = base_model(model)(input_ids=torch.tensor([self.prefix_ids], device=dev), use_cache=True)
            self.cache = out.past_key_values

    def __len__(self) -> int:
        return len(self.prefix_ids)

    @torch.no_grad()
    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import copy

        if self.cache is None:
            return last_layer_states(self.model, ids, mask)
        b, p = ids.shape[0], len(self.prefix_ids)
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(b)
        full_mask = torch.cat([torch.ones(b, p, dtype=mask.dtype, device=mask.device), mask], dim=1)
        out = base_model(self.model)(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True)
        return out.last_hidden_state.float()


def shared_prefix_ids(tokenizer, texts: list[str], prefix: str) -> list[int]:
    """Token ids of ``prefix`` when every text starts with it and tokenizes to those ids first, else []."""
    if not prefix or not all(t.startswith(prefix) for t in texts):
        return []
    pid = tokenizer(prefix, add_special_tokens=False).input_ids
    for t in texts:
        if tokenizer(t, add_special_tokens=False).input_ids[: len(pid)] != pid:
            return []
    return pid
