"""TurboConn model: a Hugging Face Llama with LoRA on all projections plus high-to-low "bridges".

A bridge b = (s, d), s > d, takes the residual stream after decoder layer s at token t - g, projects it
down to rank r (``down[b]``: H -> r, with bias), scales it by ``m`` and adds its up-projection
(``up[b]``: r -> H, zero-initialised, with bias) to the residual stream after layer d at token t.
The sequence is processed in chunks of at most g tokens with the KV cache, so everything token t needs
from t - g already exists (spec section 2.2). With no bridges (or m = 0 and zero up-projection bias) the
layer loop below is exactly ``LlamaForCausalLM.forward``.

    python -c "from high_to_low.get_model import build_model; print(build_model('tiny', True)[0])"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from high_to_low import fast_grouped
from shared_utils.errors import UserError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_SCALE = 0.01  # the original's constant LoRA "alpha" (not alpha / r)
MULTIPLIER_SCALE = 0.01  # --multiplier 100 means m = 1.0 in the original
IMPROVED_RANK, TRANSFORMER_RANK = 120, 140  # the original's ranks (Llama-3.x presets)


# ----------------------------------------------------------------------------------------- bridge presets
def _pairs(sources, dests, keep) -> list[tuple[int, int]]:
    return [(s, d) for s in sources for d in dests if keep(s, d)]


def preset_bridges(model_name: str, num_layers: int) -> list[tuple[int, int]]:
    """The original's hard-coded bridges for Llama-3.1-8B / Llama-3.2-1B, else a rule by depth.

    8B (32 layers): sources {6,8..30}, destinations {7,9..25}, s - d > 6 (45 bridges).
    1B (16 layers): sources = destinations = {0,2..14}, s - d > 5 (15 bridges).
    Other depths (our rule): the 8B generator clipped to the depth (SmolLM2-135M: 36 bridges); for
    L <= 8 or when that leaves nothing: sources = upper half, destinations = lower half, s - d >= L/2.
    """
    name = model_name.lower()
    if "llama-3.1-8b" in name and num_layers == 32:
        return _pairs(range(6, 32, 2), range(7, 26, 2), lambda s, d: s - d > 6)
    if "llama-3.2-1b" in name and num_layers == 16:
        return _pairs(range(0, 16, 2), range(0, 16, 2), lambda s, d: s - d > 5)
    pairs = []
    if num_layers > 8:
        pairs = _pairs(range(6, num_layers - 1, 2), range(7, min(26, num_layers), 2), lambda s, d: s - d >= 7)
    if not pairs:
        half = num_layers // 2
        pairs = _pairs(range(half, num_layers), range(0, half), lambda s, d: s - d >= max(1, num_layers / 2))
    return pairs


def parse_bridges(text: str, num_layers: int) -> list[tuple[int, int]]:
    """``"5:0,5:1"`` -> [(5, 0), (5, 1)]; every source must sit above its destination, inside the model."""
    pairs = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        try:
            s, d = (int(v) for v in item.split(":"))
        except ValueError:
            raise UserError(f"--bridges: '{item}' is not 'source:destination' (e.g. 5:0,5:1)") from None
        if not (0 <= d < s < num_layers):
            raise UserError(f"--bridges: {s}:{d} needs 0 <= destination < source < {num_layers}")
        pairs.append((s, d))
    return pairs


# ------------------------------------------------------------------------------------------------- LoRA
class LoraLinear(nn.Module):
    """y = W x + 0.01 * B(A x), A zero-initialised and B ~ N(0, std): the original's (reversed) LoRA init."""

    def __init__(self, base: nn.Linear, rank: int, init_std: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, dtype=base.weight.dtype)
        nn.init.zeros_(self.lora_A.weight)
        nn.init.normal_(self.lora_B.weight, 0.0, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + LORA_SCALE * self.lora_B(self.lora_A(x))


def add_lora(lm: nn.Module, rank: int, init_std: float) -> None:
    """Wrap the 7 projections of every decoder layer in place (attention q/k/v/o, MLP gate/up/down)."""
    for layer in lm.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if isinstance(getattr(parent, name, None), nn.Linear):
                    setattr(parent, name, LoraLinear(getattr(parent, name), rank, init_std))


def lora_params_per_rank(config) -> int:
    """Trainable LoRA parameters per unit of rank: sum over layers of (in + out) of the 7 projections."""
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
    return config.num_hidden_layers * per_layer


def bridge_params(config, n_bridges: int, rank: int) -> int:
    h = config.hidden_size
    return n_bridges * (2 * h * rank + rank + h)


def matched_transformer_rank(config, n_bridges: int, rank: int) -> int:
    """Baseline LoRA rank with at least the improved model's trainable parameters (LoRA + bridges)."""
    per_rank = lora_params_per_rank(config)
    return math.ceil((per_rank * rank + bridge_params(config, n_bridges, rank)) / per_rank)


# ------------------------------------------------------------------------------------------ grouped state
@dataclass
class GroupedState:
    """What carries over between chunks: the KV cache, the bridge carries, and how many tokens were seen.

    ``carries`` is a list of (start position, (B, n, total * r)): per chunk, the down-projections of every
    bridge, sources in increasing layer order; ``weights`` the stacked bridge weights (built once per state).
    """

    cache: DynamicCache | None
    carries: list = field(default_factory=list)
    length: int = 0
    weights: dict | None = None


class TurboConnLM(nn.Module):
    """A LlamaForCausalLM (its modules reused) + bridges, run chunk by chunk with a KV cache.

    Args:
        lm: the (LoRA-wrapped or plain) LlamaForCausalLM.
        bridges: list of (source, destination) layer pairs, source > destination.
        rank: bridge rank r.
        multiplier: the CLI multiplier; the carry is scaled by multiplier * 0.01.
        group_size: g, the token delay of a bridge and the chunk length of grouped processing.
    """

    def __init__(self, lm: nn.Module, bridges, rank: int, multiplier: float, group_size: int):
        super().__init__()
        if group_size <= 0:
            raise UserError(f"--group_size must be >= 1 (got {group_size})")
        self.lm = lm
        self.config = lm.config
        self.bridges = [tuple(b) for b in bridges]
        self.rank, self.group_size = rank, group_size
        self.fast = True  # grouped training/eval through fast_grouped (False: the reference chunk loop)
        self.m = multiplier * MULTIPLIER_SCALE
        h, std = lm.config.hidden_size, lm.config.initializer_range
        dtype = lm.model.embed_tokens.weight.dtype
        self.down = nn.ModuleList(nn.Linear(h, rank, dtype=dtype) for _ in self.bridges)
        self.up = nn.ModuleList(nn.Linear(rank, h, dtype=dtype) for _ in self.bridges)
        for down, up in zip(self.down, self.up):
            nn.init.normal_(down.weight, 0.0, std)
            nn.init.zeros_(down.bias)
            nn.init.zeros_(up.weight)  # zero up-projection: at init the model is the pretrained one
            nn.init.zeros_(up.bias)
        self.by_dest = {d: [i for i, b in enumerate(self.bridges) if b[1] == d] for _, d in self.bridges}
        self.by_source = {s: [i for i, b in enumerate(self.bridges) if b[0] == s] for s, _ in self.bridges}

    # -------------------------------------------------------------------------------------- one chunk
    def new_state(self, use_cache: bool = True) -> GroupedState:
        cache = DynamicCache(config=self.config) if use_cache else None
        return GroupedState(cache=cache, carries=[], weights=self.stacked_bridges())

    def stacked_bridges(self) -> dict:
        """Bridges stacked per source (one down-projection of all k_s bridges leaving s, (k_s * r, H)) and per
        destination (one up-projection (H, k_d * r) of the concatenated incoming carries, m folded in, biases
        summed, and the column index of each incoming carry in the concatenation of all sources' carries)."""
        sources = sorted(self.by_source)
        if not sources:
            return {"sources": [], "down": {}, "up": {}}
        dev = self.down[0].weight.device  # one device for all stacked weights (layer-wise dispatch moves h)
        down = {s: (torch.cat([self.down[b].weight.to(dev) for b in self.by_source[s]]),
                    torch.cat([self.down[b].bias.to(dev) for b in self.by_source[s]])) for s in sources}
        offset, col = 0, {}
        for s in sources:
            for b in self.by_source[s]:
                col[b] = offset
                offset += self.rank
        up = {}
        for d, bs in self.by_dest.items():
            # (H, total * r): zero columns for carries that do not feed d, so no gather per call
            w = torch.zeros(self.config.hidden_size, offset, dtype=self.up[bs[0]].weight.dtype, device=dev)
            for b in bs:
                w = w.index_copy(1, torch.arange(col[b], col[b] + self.rank, device=dev), self.up[b].weight.to(dev))
            up[d] = (w * self.m, torch.stack([self.up[b].bias.to(dev) for b in bs]).sum(0))
        return {"sources": sources, "down": down, "up": up}

    def _incoming(self, state: GroupedState, start: int, end: int) -> torch.Tensor | None:
        """All carries c_{., t-g} for t in [max(start, g), end) (sources concatenated); None if there are none."""
        g = self.group_size
        lo, hi = max(start, g) - g, end - g
        if hi <= lo:
            return None
        pieces = []
        for p_start, c in state.carries:
            a, z = max(lo, p_start), min(hi, p_start + c.shape[1])
            if a < z:
                pieces.append(c[:, a - p_start: z - p_start])
        got = sum(p.shape[1] for p in pieces)
        if got != hi - lo:
            raise RuntimeError(f"bridge carries for positions [{lo}, {hi}) are missing (have {got})")
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def _add_bridges(self, h: torch.Tensor, layer: int, state: GroupedState, incoming) -> torch.Tensor:
        if incoming is None or layer not in state.weights["up"]:
            return h
        w, bias = state.weights["up"][layer]
        add = F.linear(incoming.to(w.device), w, bias).to(h.device)
        skip = h.shape[1] - add.shape[1]  # tokens t < g receive nothing (no bias either)
        if skip:
            add = torch.cat([add.new_zeros(add.shape[0], skip, add.shape[2]), add], dim=1)
        return h + add

    def _record_carries(self, state: GroupedState, start: int, sent: list) -> None:
        """Store this chunk's carries of all sources as one (B, n, total * r) entry; drop unreadable ones."""
        keep_from = start + sent[0].shape[1] - self.group_size  # older carries can never be read again
        kept = [(s, c) for s, c in state.carries if s + c.shape[1] > keep_from]
        state.carries = kept + [(start, sent[0] if len(sent) == 1 else torch.cat(sent, dim=-1))]

    def forward_chunk(self, input_ids, attention_mask, state: GroupedState) -> torch.Tensor:
        """Logits of one chunk; ``attention_mask`` covers all tokens seen so far plus this chunk (or None)."""
        start, n = state.length, input_ids.shape[1]
        if self.bridges and n > self.group_size:
            raise ValueError(f"a chunk of {n} tokens > group_size {self.group_size} would break causality")
        model = self.lm.model
        h = model.embed_tokens(input_ids)
        position_ids = torch.arange(start, start + n, device=h.device).unsqueeze(0)
        mask = create_causal_mask(
            config=self.config, inputs_embeds=h, attention_mask=attention_mask,
            past_key_values=state.cache, position_ids=position_ids,
        )
        pos_emb = model.rotary_emb(h, position_ids=position_ids)
        # every carry this chunk reads comes from earlier chunks (t - g < start when n <= g)
        incoming = self._incoming(state, start, start + n) if self.bridges else None
        down, sent = (state.weights["down"] if self.bridges else {}), []
        for i, layer in enumerate(model.layers[: self.config.num_hidden_layers]):
            h = layer(h, attention_mask=mask, position_embeddings=pos_emb, position_ids=position_ids,
                      past_key_values=state.cache, use_cache=state.cache is not None)
            if self.bridges:
                h = self._add_bridges(h, i, state, incoming)  # 1. receive from token t - g (after layer d)
                if i in down:  # 2. send from this layer (after step 1)
                    sent.append(F.linear(h.to(down[i][0].device), *down[i]))
        if sent:
            self._record_carries(state, start, sent)
        state.length = start + n
        return self.lm.lm_head(model.norm(h))

    # ------------------------------------------------------------------------------------ whole sequences
    def forward(self, input_ids, attention_mask=None, grouped: bool | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, T, V): groups of g with the cache if ``grouped`` (default: iff bridges)."""
        grouped = bool(self.bridges) if grouped is None else grouped
        if not grouped:
            logits = self.forward_chunk(input_ids, attention_mask, self.new_state(use_cache=False))
            return logits.to(input_ids.device)  # no-op unless dispatched over several GPUs
        if self.fast and fast_grouped.supported(self):
            return fast_grouped.grouped_forward(self, input_ids, attention_mask)
        return self.forward_reference(input_ids, attention_mask)

    def forward_reference(self, input_ids, attention_mask=None) -> torch.Tensor:
        """The grouped rule run chunk by chunk through the Hugging Face layers and a DynamicCache (reference)."""
        state, outs, g = self.new_state(), [], self.group_size
        for i in range(0, input_ids.shape[1], g):
            mask = None if attention_mask is None else attention_mask[:, : i + g]
            outs.append(self.forward_chunk(input_ids[:, i: i + g], mask, state))
        return torch.cat(outs, dim=1).to(input_ids.device)

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int, use_cache: bool = True) -> torch.Tensor:
        """Greedy continuation (B, max_new_tokens) of equal-length prompts (no padding).

        With the cache: prefill in chunks of g (bridges) or one chunk, then one token per call, the bridge
        carries kept in the state. Without it: every step recomputes the whole sequence (reference).
        """
        if not use_cache:
            seq = input_ids
            for _ in range(max_new_tokens):
                nxt = self.forward(seq)[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], dim=1)
            return seq[:, input_ids.shape[1]:]
        state = self.new_state()
        if self.bridges and self.fast and fast_grouped.supported(self):  # prefill: the fast grouped pass
            logits = fast_grouped.grouped_forward(self, input_ids, None, state)
        else:
            chunk = self.group_size if self.bridges else input_ids.shape[1]
            for i in range(0, input_ids.shape[1], chunk):
                logits = self.forward_chunk(input_ids[:, i: i + chunk], None, state)
        out = []
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            if len(out) < max_new_tokens:
                logits = self.forward_chunk(nxt, None, state)
        return torch.cat(out, dim=1)

    # ---------------------------------------------------------------------------------- parameters
    def trainable_named_parameters(self, full_finetune: bool) -> list[tuple[str, nn.Parameter]]:
        """LoRA + bridge parameters (the original's optimizer set), or everything with ``full_finetune``."""
        named = list(self.named_parameters())
        if full_finetune:
            return named
        return [(n, p) for n, p in named if "lora_" in n or n.startswith(("down.", "up."))]


def select_trainable(model: TurboConnLM, full_finetune: bool) -> list[nn.Parameter]:
    """Freeze everything but the trainable set (same maths as the original, cheaper backward)."""
    keep = dict(model.trainable_named_parameters(full_finetune))
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)
    return list(keep.values())


# ------------------------------------------------------------------------------------------------ builders
TINY_MODEL = "tiny"  # a Llama trained from scratch with the word-level tokenizer (CPU tables)


def tiny_config(tokenizer, num_layers: int = 6, hidden: int = 64, heads: int = 4, mlp: int = 172):
    """Spec 8.2: hidden 64, 6 layers, 4 heads, SwiGLU 172, RoPE, RMSNorm, untied head (~0.31 M params)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, intermediate_size=mlp,
        num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def load_base(model_name: str, seed: int = 42, tiny_layers: int = 6):
    """(LlamaForCausalLM in fp32, tokenizer) for ``tiny``, the embedded SmolLM2, a local dir or a Hub id."""
    from transformers import LlamaForCausalLM

    from high_to_low.reasoning_datasets import WordTokenizer
    from shared_utils.models import load_causal_lm, load_tokenizer

    if model_name == TINY_MODEL:
        tok = WordTokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the from-scratch weights are a function of the seed
            lm = LlamaForCausalLM(tiny_config(tok, num_layers=tiny_layers))
        return lm, tok
    tok = load_tokenizer(model_name)
    lm = load_causal_lm(model_name, dtype=torch.float32)
    if getattr(lm.config, "model_type", "") != "llama":
        raise UserError(f"{model_name} is a '{lm.config.model_type}' model; this method supports Llama models")
    return lm, tok


def build_model(cfg: dict):
    """(TurboConnLM, tokenizer) from a save_configs-style dict (keys as written by train.py)."""
    lm, tok = load_base(cfg["model_name"], seed=cfg.get("seed", 42), tiny_layers=cfg.get("tiny_layers", 6))
    if not cfg.get("full_finetune", False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.get("seed", 42))
            add_lora(lm, cfg["lora_rank"], lm.config.initializer_range)
    bridges = cfg["bridges"] if cfg["our_method"] else []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.get("seed", 42) + 1)
        model = TurboConnLM(lm, bridges, cfg["bridge_rank"], cfg["multiplier"], cfg["group_size"])
    return model, tok
