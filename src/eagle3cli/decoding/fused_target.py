"""The decoder's target forward for Llama-family models, run by eagle3 itself.

transformers runs a decoder layer as ~40 module calls and dispatches: seven projections (q, k,
v, o, gate, up, down), two norms, RoPE, the attention interface, the cache update. For one
token on a CPU that glue is a large part of the forward (SmolLM2-135M, float32, packed: 27.7 ms
per decode(1) after 128 tokens against 23.0 ms here; ``benchmarks/cpu_target_forward.py``).
:class:`FusedTarget` runs the same arithmetic from the same weights, with

- the q/k/v matrices stacked into one and gate/up into one (four products per layer instead
  of seven: fewer, larger oneDNN calls move the same bytes faster),
- keys and values written in place into the decoder's preallocated cache
  (:func:`~eagle3cli.target.kv_cache.new_cache`) and passed to
  ``scaled_dot_product_attention`` ungrouped (``enable_gqa``), with the tree mask as a bool,
- the capture layers' inputs taken as the loop passes them (no hooks).

It reads the model's own modules for what is not a projection — embedding, RoPE (``rotary_emb``,
so every RoPE scaling transformers knows), norms, activation, attention scale — and computes
each norm as transformers does (float32 statistics, cast back before the weight). Its logits
equal the model's own forward bit for bit in the tests (float32 and bfloat16, weights as loaded
or both packed: stacking only concatenates output columns, each output is the same dot
product), and in any case the bench runs baseline and speculative decoding through the same
forward, so speculative output stays identical to plain decoding. Only the projections are
re-laid (``fused``, an ``nn.Module`` the caller may pack for the CPU with
:func:`~eagle3cli.decoding.layout.cpu_linears`); the model is left unchanged and usable.

Supported ``model_type``\\ s: llama, mistral, qwen2, qwen3 (q/k norms before RoPE) and
hunyuan_v1_dense (after RoPE). :func:`unfused_reason` says why another model is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eagle3cli.decoding.fused_ops import rms_norm, rotate, rotated_heads, stacked
from eagle3cli.decoding.state import TargetOutput
from eagle3cli.decoding.target import HFTarget
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.capture import base_model, concat_captured
from eagle3cli.target.kv_cache import new_cache

# model_type → where its per-head q/k norms sit (None: it has none)
QK_NORMS: dict[str, tuple[str, str, str] | None] = {
    "llama": None,
    "mistral": None,
    "qwen2": None,
    "qwen3": ("q_norm", "k_norm", "before RoPE"),
    "hunyuan_v1_dense": ("query_layernorm", "key_layernorm", "after RoPE"),
}
PROJECTIONS = (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")), ("mlp", ("gate_proj", "up_proj", "down_proj")))


def unfused_reason(model: nn.Module) -> str | None:
    """Why :class:`FusedTarget` cannot run ``model`` (``None``: it can)."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in QK_NORMS:
        return f"model_type {model_type!r} is not one of {', '.join(QK_NORMS)}"
    if not isinstance(getattr(model, "lm_head", None), nn.Linear):
        return "the model has no nn.Linear lm_head"
    base = base_model(model)
    if not all(hasattr(base, name) for name in ("embed_tokens", "rotary_emb", "norm")):
        return "the decoder stack lacks embed_tokens, rotary_emb or norm"
    norms = QK_NORMS[model_type]
    for layer in base.layers:
        for block, names in PROJECTIONS:
            if not all(isinstance(getattr(getattr(layer, block, None), name, None), nn.Linear) for name in names):
                return f"a decoder layer lacks one of {block}.{'/'.join(names)} as nn.Linear"
        if norms is not None and not all(hasattr(layer.self_attn, name) for name in norms[:2]):
            return f"a decoder layer lacks the q/k norms {norms[0]}/{norms[1]}"
    return None


class FusedLayer(nn.Module):
    """One decoder layer's projections, q/k/v and gate/up stacked (new matrices); o and down are the model's modules."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv = stacked([attention.q_proj, attention.k_proj, attention.v_proj])
        self.o = attention.o_proj
        self.gate_up = stacked([mlp.gate_proj, mlp.up_proj])
        self.down = mlp.down_proj
        self.heads = [linear.out_features // attention.head_dim for linear in (attention.q_proj, attention.k_proj, attention.v_proj)]
        self.intermediate = mlp.gate_proj.out_features


class FusedProjections(nn.Module):
    """Every projection the fused forward multiplies by — the layers' and the LM head — in one
    module, so a caller lays them out for the CPU at once without touching the model's own."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusedLayer(layer) for layer in base_model(model).layers)
        self.head = model.lm_head


class FusedTarget(HFTarget):
    """A :class:`~eagle3cli.decoding.state.TargetModel` for the Llama-family ``model`` that runs
    its layers itself (stacked projections, no per-module glue). Cache keep/crop are
    :class:`HFTarget`'s: the cache is the same preallocated transformers ``Cache``."""

    def __init__(self, model: nn.Module, aux_layer_ids: Sequence[int]) -> None:
        reason = unfused_reason(model)
        if reason is not None:
            raise Eagle3Error(f"the fused target forward cannot run this model: {reason}",
                              hint="use --target-forward transformers")
        super().__init__(model, aux_layer_ids)
        self.base = base_model(model)
        self.fused = FusedProjections(model)
        self.qk_norms = QK_NORMS[model.config.model_type]
        attention = self.base.layers[0].self_attn
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        # On a CPU the LM head over a tree is bound by arithmetic (SmolLM2's 49k x 576 head: ~10 ms for
        # 16 rows, ~6 ms for 6, ~4 ms for 1), and reading which nodes have children waits on nothing.
        self.partial_logits = next(model.parameters()).device.type == "cpu"

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
        *,
        last_logits_only: bool = False,
        logit_rows: torch.Tensor | None = None,
    ) -> TargetOutput:
        """As :meth:`HFTarget.forward`: logits, the capture layers' inputs ``[1, T, 3 * Ht]``, the grown
        cache. ``logit_rows [R]``: only those rows' logits ``[1, R, V]``, and ``head`` for others."""
        if cache is None:
            cache = new_cache()
        length = input_ids.shape[1]
        cached = cache.get_seq_length()
        x = self.base.embed_tokens(input_ids)
        cos, sin = (part[:, :, None] for part in self.base.rotary_emb(x, position_ids))  # [B, T, 1, D]: heads stay in dim 2 until attention
        causal = False
        if mask is None and length > 1:  # a prefill: causal over the cache (from the top-left when it is empty)
            causal = cached == 0
            mask = None if causal else torch.ones(length, cached + length, dtype=torch.bool, device=x.device).tril(cached)
        captured: dict[int, torch.Tensor] = {}
        # Modules are run by their ``forward``: nn.Module's ``__call__`` (hook dispatch) costs a few
        # microseconds a call, ~150 calls a forward, 2-5 % of a SmolLM2 forward on a CPU.
        for index, (layer, fused) in enumerate(zip(self.base.layers, self.fused.layers)):
            if index in self.aux_layer_ids:
                captured[index] = x
            x = x + self.attention(layer, fused, rms_norm(x, layer.input_layernorm), cos, sin, mask, causal, cache, index)
            gate, up = fused.gate_up.forward(rms_norm(x, layer.post_attention_layernorm)).split(fused.intermediate, dim=-1)
            x = x + fused.down.forward(layer.mlp.act_fn.forward(gate) * up)
        x = rms_norm(x[:, -1:] if last_logits_only else x, self.base.norm)
        aux = concat_captured(captured, self.aux_layer_ids)
        if logit_rows is None:
            return TargetOutput(self.fused.head.forward(x), aux, cache)

        def head(rows: torch.Tensor) -> torch.Tensor:
            return self.fused.head.forward(x[0, rows])

        return TargetOutput(head(logit_rows)[None], aux, cache, head=head)

    def attention(
        self, layer: nn.Module, fused: FusedLayer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
        mask: torch.Tensor | None, causal: bool, cache: Any, index: int,
    ) -> torch.Tensor:
        batch, length = x.shape[:2]
        heads = fused.qkv.forward(x).view(batch, length, -1, self.head_dim)  # [B, T, q + k + v heads, D]
        num_query, num_qk = fused.heads[0], fused.heads[0] + fused.heads[1]
        norms = self.qk_norms
        if norms is None:  # one RoPE over the query and key heads together: the same products, half the calls
            query, key, value = rotated_heads(heads, num_query, num_qk, cos, sin)
        else:
            query, key = heads[:, :, :num_query], heads[:, :, num_query:num_qk]
            if norms[2] == "before RoPE":
                query, key = rms_norm(query, getattr(layer.self_attn, norms[0])), rms_norm(key, getattr(layer.self_attn, norms[1]))
            query, key = rotate(query, cos, sin), rotate(key, cos, sin)
            if norms[2] == "after RoPE":
                query, key = rms_norm(query, getattr(layer.self_attn, norms[0])), rms_norm(key, getattr(layer.self_attn, norms[1]))
            query, key, value = query.transpose(1, 2), key.transpose(1, 2), heads[:, :, num_qk:].transpose(1, 2)
        keys, values = cache.update(key, value, index)
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, is_causal=causal, scale=self.scaling,
                                             enable_gqa=query.shape[1] != keys.shape[1])
        return fused.o.forward(out.transpose(1, 2).reshape(batch, length, -1))
