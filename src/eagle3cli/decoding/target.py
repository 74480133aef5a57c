"""Adapter from a stock Hugging Face causal LM to the decoder's :class:`TargetModel`.

- **Masks and positions.** Tree verification passes a 4D mask and explicit
  ``position_ids`` to the unmodified model. The bool mask (True = attend) is turned into the
  additive float form, which both the ``sdpa`` and ``eager`` attention paths accept as is.
- **Capture.** The three capture layers (vLLM numbering: id ``k`` = the input of decoder
  layer ``k``) are read with :func:`eagle3cli.target.capture.capture_layer_inputs` (forward
  pre-hooks registered for one forward; ``output_hidden_states`` would keep every layer) —
  the same mechanism dump-hidden and online training use.
- **Cache API.** transformers up to 5.19 takes ``past_key_values=`` and returns
  ``out.past_key_values``; later versions take ``cache=`` and return ``out.cache``. The
  keyword is read once from the forward signature. Compaction copies the kept positions in
  place in each layer's ``keys``/``values`` and then calls ``crop(-k)`` (``crop`` with a
  positive length raises in newer versions; a negative count works in all of them).
- **Preallocated cache.** ``DynamicCache`` appends by concatenation, copying every layer's
  whole keys and values at every forward. The cache here (:func:`new_cache`) is a transformers
  ``Cache`` of ``PreallocatedLayer``: the same interface, but each layer's keys and
  values are views of a buffer that grows by doubling, so a forward writes only its new
  positions, compaction gathers in place and cropping moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eagle3cli.target.capture import base_model, capture_layer_inputs, check_layer_ids, concat_captured
from eagle3cli.decoding.state import COMPILED_MIN_SIZE, TargetOutput, compiled_size
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.kv_cache import cache_keyword, has_sliding_window, new_cache


GQA_SDPA = "eagle3_gqa_sdpa"


def gqa_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa`` attention, except that grouped-query keys and values reach
    ``scaled_dot_product_attention`` as they are (``enable_gqa``) also under a mask.

    transformers repeats them to every query head whenever a mask is given and the query is
    longer than one token (CUDA's fused kernels take no mask with GQA), which on a CPU copies
    each layer's whole cache per tree verification (SmolLM2: 3 key-value heads to 9); without
    the copy a 16-node verification of SmolLM2 is 3-9 % faster after 128-2,048 tokens
    (``benchmarks/cpu_attention.py``). Anything else transformers' function handles
    (soft-capping, position biases) goes to it unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    q_length = query.shape[2]
    causal = q_length > 1 and attention_mask is None and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if causal and key.shape[2] > q_length:  # as transformers: the prefill of an empty static cache
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def use_gqa_sdpa(model: nn.Module) -> bool:
    """Switch a target running transformers' ``sdpa`` attention to :func:`gqa_sdpa_attention`
    (the same results; for CPU decoding). Returns whether it switched (another attention
    implementation is left alone)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(GQA_SDPA, gqa_sdpa_attention)
    AttentionMaskInterface.register(GQA_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # sdpa's masks (else none at all)
    model.set_attn_implementation(GQA_SDPA)
    return True


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool mask (True = attend) → float mask (0 = attend, dtype minimum = masked)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class HFTarget:
    """A stock HF causal LM seen as a :class:`~eagle3cli.decoding.state.TargetModel`.

    ``preallocated=False`` leaves the cache to transformers (``DynamicCache``), for comparison."""

    def __init__(self, model: nn.Module, aux_layer_ids: Sequence[int], *, preallocated: bool = True) -> None:
        check_layer_ids(len(base_model(model).layers), aux_layer_ids)
        if has_sliding_window(model.config):
            raise Eagle3Error(
                "the target uses sliding-window attention, whose cache cannot be compacted by position",
                hint="disable sliding windows in the target config for speculative decoding",
            )
        self.model = model
        self.aux_layer_ids = tuple(aux_layer_ids)
        self.cache_keyword = cache_keyword(model)
        self.preallocated = preallocated

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
        *,
        last_logits_only: bool = False,
    ) -> TargetOutput:
        """Run the model over ``input_ids [1, T]``; capture ``aux_hidden [1, T, 3 * Ht]``."""
        if cache is None and self.preallocated:
            cache = new_cache()
        with capture_layer_inputs(self.model, self.aux_layer_ids) as captured:
            out = self.model(
                input_ids=input_ids,
                position_ids=position_ids,
                attention_mask=None if mask is None else additive_mask(mask, self.dtype),
                use_cache=True,
                logits_to_keep=1 if last_logits_only else 0,
                **{self.cache_keyword: cache},
            )
        return TargetOutput(out.logits, concat_captured(captured, self.aux_layer_ids), getattr(out, self.cache_keyword))

    def keep(self, cache: Any, start: int, positions: torch.Tensor) -> Any:
        """Keep ``[:start]`` plus ``positions`` (ascending, ``>= start``) in every layer."""
        length = cache.get_seq_length()
        kept = positions.numel()
        for layer in cache.layers:
            layer.keys[..., start : start + kept, :] = layer.keys[..., positions, :]
            layer.values[..., start : start + kept, :] = layer.values[..., positions, :]
        return self.crop(cache, start + kept) if length > start + kept else cache

    def crop(self, cache: Any, length: int) -> Any:
        """Keep the first ``length`` positions (``None`` stays ``None``)."""
        if cache is None:
            return None
        excess = cache.get_seq_length() - length
        if excess > 0:
            cache.crop(-excess)
        return cache


COMPILED_GRAPH_LIMIT = 32


class StaticTarget(HFTarget):
    """A stock HF causal LM over transformers' ``StaticCache``: every decode and tree
    verification sees the same shapes — keys and values of ``capacity`` positions, the tree mask
    padded to that width — so ``compile=True`` runs them through ``torch.compile`` with one graph
    per forward kind and capacity (``mode="reduce-overhead"`` on CUDA: CUDA graphs, replayed at
    fixed addresses). Prompt and turn forwards (several new tokens, no tree) run eagerly.

    - **One conversation at a time.** The target owns its cache: a new conversation
      (``cache=None``) reuses it from position 0, so a compiled graph is never re-recorded for a
      new buffer; an earlier conversation's state is then stale. ``capacity`` starts at
      ``min_capacity`` and doubles (the same cache object, the held positions copied into new
      buffers; one new graph) when a forward would overflow it.
    - **Writes and lengths.** The cache writes at its ``cumulative_length`` (a device tensor);
      the held length is also kept on the host, so compaction (an in-place gather) and cropping
      move that tensor with ``fill_`` and never read the device.
    - **Capture.** The capture layers come from ``output_hidden_states`` (index ``k`` = the input
      of decoder layer ``k``, the vLLM numbering): hooks registered per call would recompile.
    """

    def __init__(self, model: nn.Module, aux_layer_ids: Sequence[int], *, compile: bool = False,
                 min_capacity: int = COMPILED_MIN_SIZE) -> None:
        super().__init__(model, aux_layer_ids, preallocated=False)
        self.min_capacity = min_capacity
        self.cache: Any = None
        self.length = 0
        self.compiled = None
        if compile:
            cuda = next(model.parameters()).device.type == "cuda"
            self.compiled = torch.compile(model.forward, mode="reduce-overhead" if cuda else None, dynamic=False)
            # two graphs (decode, tree) per capacity, and capacity doubles: more than dynamo's default 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILED_GRAPH_LIMIT)

    @property
    def capacity(self) -> int:
        return 0 if self.cache is None else self.cache.layers[0].max_cache_len

    def _room(self, needed: int) -> Any:
        """The cache, with room for ``needed`` positions: if it has less, its layers are
        reallocated (the held positions copied over) in the same cache object, so a state
        holding it stays valid."""
        from transformers import StaticCache

        if needed <= self.capacity:
            return self.cache
        grown = StaticCache(config=self.model.config, max_cache_len=compiled_size(needed, self.min_capacity))
        if self.cache is None:
            self.cache = grown
            return grown
        if self.cache.layers[0].is_initialized:
            for old, new in zip(self.cache.layers, grown.layers):
                new.lazy_initialization(old.keys, old.values)
                new.keys[:, :, : self.length] = old.keys[:, :, : self.length]
                new.values[:, :, : self.length] = old.values[:, :, : self.length]
                new.cumulative_length.fill_(self.length)
        self.cache.layers = grown.layers
        return self.cache

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor | None, cache: Any, *,
                last_logits_only: bool = False) -> TargetOutput:
        """As :meth:`HFTarget.forward`; decode(1) and tree forwards through the compiled graph."""
        if cache is None:
            self.crop(self.cache, 0)
        self._check(cache)
        count = input_ids.shape[1]
        cache = self._room(self.length + count)
        step = count == 1 or mask is not None  # decode(1) or a tree: the compiled shapes
        if mask is not None:
            mask = additive_mask(nn.functional.pad(mask, (0, self.capacity - mask.shape[-1]), value=False), self.dtype)
        forward = self.compiled if step and self.compiled is not None else self.model.forward
        if forward is self.compiled:
            # fresh strides: a graph is guarded on them, and a view of the growing context has new ones each step
            input_ids, position_ids = (x.clone(memory_format=torch.contiguous_format) for x in (input_ids, position_ids))
            if input_ids.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # the previous replay's outputs are no longer read
        out = forward(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=True,
                      output_hidden_states=True, logits_to_keep=1 if last_logits_only else 0, **{self.cache_keyword: cache})
        self.length += count
        aux = torch.cat([out.hidden_states[k] for k in self.aux_layer_ids], dim=-1)
        if forward is self.compiled:  # a replay's outputs live in buffers the next one overwrites
            return TargetOutput(out.logits.clone(), aux, cache)
        return TargetOutput(out.logits, aux, cache)

    def _check(self, cache: Any) -> None:
        if cache is not None and cache is not self.cache:
            raise Eagle3Error("a static-cache target holds one conversation at a time, and this state's cache is not the one it holds",
                              hint="continue only from the latest conversation's state (not a copy of it)")

    def keep(self, cache: Any, start: int, positions: torch.Tensor) -> Any:
        self._check(cache)
        kept = positions.numel()
        for layer in cache.layers:
            layer.keys[:, :, start : start + kept] = layer.keys[:, :, positions]
            layer.values[:, :, start : start + kept] = layer.values[:, :, positions]
        return self.crop(cache, start + kept)

    def crop(self, cache: Any, length: int) -> Any:
        if cache is None:
            return None
        self._check(cache)
        self.length = min(self.length, length)
        for layer in cache.layers:
            if layer.is_initialized:
                layer.cumulative_length.fill_(self.length)
        return cache
