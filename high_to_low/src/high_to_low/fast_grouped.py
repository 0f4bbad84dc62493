"""Fast grouped (sequential-chunk) forward of TurboConn for training and teacher-forced evaluation.

The reference loop (``TurboConnLM.forward_reference``) runs every Hugging Face decoder layer once per group
of g tokens with a ``DynamicCache``. Profiling it (``results/profile_grouped.md``) showed that at g = 4 the
time went to per-call overhead, not arithmetic: ~50 small ops per layer and group, the cache concatenating
the whole K/V prefix every group (and its backward splitting it again), a causal mask and RoPE table built
per call, and seven separate projections. This module computes exactly the same function with:

1. layers that no bridge feeds (0..d_min, where d_min is the lowest destination, and the layers above the
   highest source) run once over the whole sequence with the ordinary Hugging Face layer, since nothing in
   them depends on earlier groups;
2. per group, a lean layer: fused q/k/v and gate/up weights (concatenated once per forward, LoRA kept as
   two small matmuls), RoPE tables and masks sliced from one full-sequence table;
3. the KV cache as a preallocated per-layer buffer written in place, read by a custom autograd attention
   (``_CachedAttention``) whose backward accumulates dK/dV of the whole prefix into one buffer, the
   original repository's "LinkedListCache" idea without any concatenation; groups of one layer are chained
   by an empty token tensor so that autograd runs their backwards from the last group to the first;
4. bridges stacked per destination and per source (one matmul each instead of one per bridge).

Equality with the reference loop and with one full pass is tested (tests/test_model.py, test_fast.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.masking_utils import create_causal_mask

# ---------------------------------------------------------------------------------------------- attention
FLASH = False  # True: use the fused CPU flash-attention kernel where it applies (False: explicit matmuls)


class _KVBuffers:
    """Per-layer K/V of the whole sequence (written group by group) and their gradients (filled backward)."""

    def __init__(self):
        self.k = self.v = self.gk = self.gv = None


class _CachedAttention(torch.autograd.Function):
    """softmax(Q K[:e]^T * scale + bias) V[:e] for one group [s, e), K/V of the group written in place.

    q: (B, kvh, R, d) with the ``rep`` query heads of each KV head stacked along R = rep * n;
    k, v: (B, kvh, n, d) of this group; bias: (R, e) or (B, 1, R, e) additive mask;
    token: the previous group's chain token (empty tensor) so that backwards run last group first.
    """

    @staticmethod
    def forward(ctx, q, k, v, token, buf: _KVBuffers, s: int, e: int, bias, scale: float):
        buf.k[:, :, s:e] = k
        buf.v[:, :, s:e] = v
        kc, vc = buf.k[:, :, :e], buf.v[:, :, :e]
        ctx.buf, ctx.s, ctx.e, ctx.scale, ctx.bias = buf, s, e, scale, bias
        ctx.flash = FLASH and q.device.type == "cpu" and q.dtype == torch.float32
        if ctx.flash:  # torch's fused CPU flash kernel (forward and backward): far fewer, larger calls than bmm
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, kc, vc, 0.0, False, attn_mask=bias, scale=scale)
            ctx.save_for_backward(q, out, lse)
            return out, token.new_empty(0)
        scores = torch.matmul(q, kc.transpose(-1, -2)).mul_(scale).add_(bias)
        p = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(p, vc)
        ctx.save_for_backward(q, p)
        return out, token.new_empty(0)

    @staticmethod
    def backward(ctx, d_out, _d_token):
        buf, s, e, scale = ctx.buf, ctx.s, ctx.e, ctx.scale
        if buf.gk is None:  # the last group's backward runs first: allocate the gradient buffers once
            buf.gk, buf.gv = torch.zeros_like(buf.k), torch.zeros_like(buf.v)
        kc, vc = buf.k[:, :, :e], buf.v[:, :, :e]
        if ctx.flash:
            q, out, lse = ctx.saved_tensors
            dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                d_out.contiguous(), q, kc, vc, out, lse, 0.0, False, attn_mask=ctx.bias, scale=scale)
            buf.gk[:, :, :e] += dk
            buf.gv[:, :, :e] += dv
            return dq, buf.gk[:, :, s:e].clone(), buf.gv[:, :, s:e].clone(), d_out.new_empty(0), None, None, None, \
                None, None
        q, p = ctx.saved_tensors
        buf.gv[:, :, :e] += torch.matmul(p.transpose(-1, -2), d_out)
        dp = torch.matmul(d_out, vc.transpose(-1, -2))
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        dq = torch.matmul(ds, kc).mul_(scale)
        buf.gk[:, :, :e] += torch.matmul(ds.transpose(-1, -2), q).mul_(scale)
        # Every later group (which reads [s, e)) has already added its share: these rows are final.
        return dq, buf.gk[:, :, s:e].clone(), buf.gv[:, :, s:e].clone(), d_out.new_empty(0), None, None, None, \
            None, None


# ------------------------------------------------------------------------------------------ fused weights
def _parts(mod):
    """(weight, bias, lora_A, lora_B) of an nn.Linear or a LoraLinear (A, B None without LoRA)."""
    if hasattr(mod, "lora_A"):
        return mod.base.weight, mod.base.bias, mod.lora_A.weight, mod.lora_B.weight
    return mod.weight, mod.bias, None, None


def _fuse(mods, lora_scale: float):
    """One linear for several projections of the same input: concatenated W (and bias); LoRA as A_cat and a
    block-diagonal B, so y = x W^T + b + scale * (x A^T) B^T equals the separate projections."""
    parts = [_parts(m) for m in mods]
    w = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    bias = None
    if any(p[1] is not None for p in parts):
        bias = torch.cat([p[1] if p[1] is not None else p[0].new_zeros(p[0].shape[0]) for p in parts])
    if parts[0][2] is None:
        return w, bias, None, None
    a = torch.cat([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]
    b = torch.block_diag(*[p[3] for p in parts]) if len(parts) > 1 else parts[0][3]
    return w, bias, a, b * lora_scale


def _linear(x, fused):
    w, bias, a, b = fused
    y = F.linear(x, w, bias)
    if a is not None:
        y = y + F.linear(F.linear(x, a), b)
    return y


def _rms(x, weight, eps):
    """LlamaRMSNorm: in fp32, then cast back and scaled (one fused op for fp32 inputs)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def supported(model) -> bool:
    """The fast path covers Llama-style layers (SiLU MLP, no attention dropout, one device)."""
    cfg = model.config
    layer = model.lm.model.layers[0]
    return (getattr(cfg, "hidden_act", "silu") == "silu" and not getattr(cfg, "attention_dropout", 0.0)
            and getattr(cfg, "pretraining_tp", 1) == 1 and hasattr(layer, "self_attn") and hasattr(layer, "mlp")
            and not hasattr(model.lm, "hf_device_map") and getattr(cfg, "model_type", "llama") == "llama")


class _Layer:
    """The fused weights of one decoder layer, built once per forward (autograd flows back to the params)."""

    def __init__(self, layer, lora_scale: float):
        att, mlp = layer.self_attn, layer.mlp
        self.qkv = _fuse([att.q_proj, att.k_proj, att.v_proj], lora_scale)
        self.o = _fuse([att.o_proj], lora_scale)
        self.gu = _fuse([mlp.gate_proj, mlp.up_proj], lora_scale)
        self.down = _fuse([mlp.down_proj], lora_scale)
        self.ln1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.ln2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        self.scale = att.scaling
        self.buf = _KVBuffers()
        self.token = None


def grouped_forward(model, input_ids, attention_mask=None, state=None) -> torch.Tensor:
    """Teacher-forced logits (B, T, V) of the grouped rule, equal to ``model.forward_reference``.

    With ``state`` (a fresh ``GroupedState``, no padding) it also fills the state's KV cache and bridge carries,
    so that decoding continues token by token with ``model.forward_chunk`` (a fast prefill).
    """
    from high_to_low.get_model import LORA_SCALE

    cfg, lm = model.config, model.lm.model
    B, T = input_ids.shape
    g = model.group_size
    L = cfg.num_hidden_layers
    heads, kvh = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    rep = heads // kvh
    dests = sorted({d for _, d in model.bridges})
    sources = sorted({s for s, _ in model.bridges})
    lo = dests[0] + 1 if dests else 0  # layers [0, lo) and (hi, L) run in one pass over the sequence
    hi = sources[-1] if sources else L - 1

    h = lm.embed_tokens(input_ids)
    position_ids = torch.arange(T, device=h.device).unsqueeze(0)
    cos, sin = lm.rotary_emb(h, position_ids=position_ids)  # (1, T, hd)
    padded = attention_mask is not None and not bool(attention_mask.all())
    full_mask = None
    if lo > 0 or hi < L - 1:
        full_mask = create_causal_mask(config=cfg, inputs_embeds=h, attention_mask=attention_mask,
                                       past_key_values=None, position_ids=position_ids)
    cache = None if state is None else state.cache
    for i in range(lo):
        h = lm.layers[i](h, attention_mask=full_mask, position_embeddings=(cos, sin), position_ids=position_ids,
                         past_key_values=cache, use_cache=cache is not None)

    # Additive attention bias of the whole sequence (T, T) or (B, 1, T, T); a group slices its rows.
    neg = torch.finfo(h.dtype).min
    allowed = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
    if padded:
        allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
    bias_full = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device).masked_fill_(~allowed, neg)

    layers = {i: _Layer(lm.layers[i], LORA_SCALE) for i in range(lo, hi + 1)}
    for lay in layers.values():
        lay.buf.k = h.new_empty(B, kvh, T, hd)
        lay.buf.v = h.new_empty(B, kvh, T, hd)
        lay.token = h.new_zeros(0, requires_grad=torch.is_grad_enabled())
    # Bridges stacked: per source one down-projection (B, n, k*r); per destination one up-projection of the
    # concatenated incoming carries, m folded into the weight, biases summed.
    src_of = {s: [b for b, (bs, _) in enumerate(model.bridges) if bs == s] for s in sources}
    down = {s: (torch.cat([model.down[b].weight for b in bs]), torch.cat([model.down[b].bias for b in bs]))
            for s, bs in src_of.items()}
    r = model.rank
    dest_in = {}
    for d in dests:
        bs = [b for b, (_, bd) in enumerate(model.bridges) if bd == d]
        w = torch.cat([model.up[b].weight for b in bs], dim=1) * model.m
        bias = torch.stack([model.up[b].bias for b in bs]).sum(0)
        # where each incoming carry lives: (source layer, column block inside that source's stack)
        where = [(model.bridges[b][0], src_of[model.bridges[b][0]].index(b)) for b in bs]
        dest_in[d] = (w, bias, where)

    prev_carry: dict[int, tuple] = {}
    outs = []
    # split (not sliced per group): one SplitBackward instead of a full-size zero tensor per group and slice
    h_groups = h.split(g, dim=1)
    for k, s0 in enumerate(range(0, T, g)):
        e0 = min(T, s0 + g)
        n = e0 - s0
        cos_g, sin_g = cos[:, s0:e0, None, :], sin[:, s0:e0, None, :]
        bias_g = bias_full[..., s0:e0, :e0]
        bias_g = bias_g.repeat(rep, 1) if bias_g.dim() == 2 else bias_g.repeat(1, 1, rep, 1)
        carry, sent = {}, []
        x = h_groups[k]  # the output of layer lo - 1 (or the embeddings) for this group
        for i in range(lo - 1, hi + 1):
            if i >= lo:
                x = _layer_forward(layers[i], x, s0, e0, heads, kvh, hd, rep, cos_g, sin_g, bias_g)
            if i in dest_in and prev_carry:
                w, bias, where = dest_in[i]
                inc = [prev_carry[src][j] for src, j in where]
                inc = inc[0] if len(inc) == 1 else torch.cat(inc, -1)
                x = x + F.linear(inc if inc.shape[1] == n else inc[:, :n], w, bias)
            if i in down:
                sent.append(F.linear(x, *down[i]))
                carry[i] = sent[-1].split(r, dim=-1)
        prev_carry = carry
        if state is not None and sent:  # the last two groups' carries are all that decoding can still read
            state.carries = state.carries[-1:] + [(s0, torch.cat(sent, dim=-1) if len(sent) > 1 else sent[0])]
        outs.append(x)
    h = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
    if state is not None:
        for i in range(lo, hi + 1):
            cache.update(layers[i].buf.k, layers[i].buf.v, i)
    for i in range(hi + 1, L):
        h = lm.layers[i](h, attention_mask=full_mask, position_embeddings=(cos, sin), position_ids=position_ids,
                         past_key_values=cache, use_cache=cache is not None)
    if state is not None:
        state.length = T
    return model.lm.lm_head(lm.norm(h))


def _layer_forward(lay: _Layer, x, s0, e0, heads, kvh, hd, rep, cos_g, sin_g, bias_g):
    """One decoder layer on the group [s0, e0): x (B, n, H) -> (B, n, H), K/V written to the layer's buffer."""
    B, n = x.shape[0], e0 - s0
    qkv = _linear(_rms(x, lay.ln1, lay.eps1), lay.qkv)
    q, k, v = qkv.split([heads * hd, kvh * hd, kvh * hd], dim=-1)
    q = q.view(B, n, heads, hd)
    k = k.view(B, n, kvh, hd)
    q = q * cos_g + _rotate_half(q) * sin_g
    k = k * cos_g + _rotate_half(k) * sin_g
    q = q.view(B, n, kvh, rep, hd).permute(0, 2, 3, 1, 4).reshape(B, kvh, rep * n, hd)
    out, lay.token = _CachedAttention.apply(q, k.transpose(1, 2), v.view(B, n, kvh, hd).transpose(1, 2),
                                            lay.token, lay.buf, s0, e0, bias_g, lay.scale)
    out = out.view(B, kvh, rep, n, hd).permute(0, 3, 1, 2, 4).reshape(B, n, heads * hd)
    x = x + _linear(out, lay.o)
    gate, up = _linear(_rms(x, lay.ln2, lay.eps2), lay.gu).chunk(2, dim=-1)
    return x + _linear(F.silu(gate) * up, lay.down)


