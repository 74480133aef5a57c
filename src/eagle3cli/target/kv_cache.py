"""Key/value caches for stock HF causal LMs, written in place: a row-ragged cache with a
one-token attention (batched sampling), and a preallocated cache for the decoder.

HF's ``DynamicCache`` concatenates every layer's keys and values with each new token: at a
batch of 128 rows and a few hundred positions that copy is ~40 % of a CPU decode step, and
all rows share one length, so rows of a continuously batched generation would need padding
that grows with every admission. :class:`RaggedCache` keeps one preallocated buffer per
layer, ``(rows, kv_heads, capacity, head_dim)``; row ``i`` fills positions
``[0, lengths[i])`` and each step writes its new token at ``lengths[i]``. Attention reads the
view ``[0, longest + 1)`` with a mask of each row's own positions, so a row only ever pays
for the longest *live* row, and a row can be replaced (a new request in a freed slot)
without touching the others.

On a CPU with native bf16 the bf16 weights halve the matrix-multiply time, but torch's bf16
attention kernels copy strided inputs (the cache views) and run ~4x slower than float32
here; so the cache may store float32 (``storage_dtype``) and :func:`decode_attention` runs
one-token queries as two batched float32 matrix products on the views, with no copy.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from eagle3cli.errors import Eagle3Error

ATTENTION_NAME = "eagle3_decode"
MIN_CAPACITY = 64


def cache_keyword(model: nn.Module) -> str:
    """``"cache"`` or ``"past_key_values"``: the name this transformers version uses."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class RaggedLayer:
    """One layer's keys and values; the row lengths and the step's write positions live in the cache."""

    def __init__(self, cache: RaggedCache) -> None:
        self.cache = cache
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def reserve(self, num_rows: int, num_heads: int, head_dim: int, capacity: int, device: torch.device) -> None:
        """Room for ``capacity`` positions of ``num_rows`` rows, doubling when grown; rows are kept."""
        buffer = self.key_buffer
        if buffer is not None and capacity <= buffer.shape[2] and num_rows == buffer.shape[0]:
            return
        old_capacity = 0 if buffer is None else buffer.shape[2]
        capacity = max(capacity, 2 * old_capacity, MIN_CAPACITY) if capacity > old_capacity else old_capacity
        shape = (num_rows, num_heads, capacity, head_dim)
        keys = torch.zeros(shape, dtype=self.cache.storage_dtype, device=device)
        values = torch.zeros(shape, dtype=self.cache.storage_dtype, device=device)
        if buffer is not None:
            rows, length = min(num_rows, buffer.shape[0]), min(capacity, old_capacity)
            keys[:rows, :, :length] = buffer[:rows, :, :length]
            values[:rows, :, :length] = self.value_buffer[:rows, :, :length]
        self.key_buffer, self.value_buffer = keys, values

    def write_step(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one new position per row at that row's length; the views attention reads."""
        cache = self.cache
        self.reserve(keys.shape[0], keys.shape[1], keys.shape[3], cache.longest + 1, keys.device)
        self.key_buffer[cache.rows, :, cache.lengths] = keys[:, :, 0].to(self.key_buffer.dtype)
        self.value_buffer[cache.rows, :, cache.lengths] = values[:, :, 0].to(self.value_buffer.dtype)
        end = cache.longest + 1
        return self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]

    def place(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put rows of keys and values (positions from 0) into row slots ``slots``."""
        length = keys.shape[2]
        self.key_buffer[slots, :, :length] = keys.to(self.key_buffer.dtype)
        self.value_buffer[slots, :, :length] = values.to(self.value_buffer.dtype)


class RaggedCache:
    """Per-layer :class:`RaggedLayer` buffers, the row ``lengths`` (a device tensor) and ``longest``."""

    def __init__(self, num_layers: int, storage_dtype: torch.dtype) -> None:
        self.storage_dtype = storage_dtype
        self.layers = [RaggedLayer(self) for _ in range(num_layers)]
        self.lengths = torch.zeros(0, dtype=torch.long)
        self.rows = torch.zeros(0, dtype=torch.long)  # arange(rows): with lengths, where a step writes
        self.longest = 0

    def set_lengths(self, lengths: torch.Tensor, longest: int) -> None:
        """The positions each row holds before the next step (``longest`` = their maximum)."""
        self.lengths, self.longest = lengths, longest
        if len(self.rows) != len(lengths):
            self.rows = torch.arange(len(lengths), device=lengths.device)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Only ``rows`` stay, in that order (the others are dropped)."""
        for layer in self.layers:
            if layer.key_buffer is not None:
                layer.key_buffer = layer.key_buffer[rows]
                layer.value_buffer = layer.value_buffer[rows]

    def hf_cache(self):
        """This cache behind transformers' ``Cache`` interface, for one decode step."""
        cache = DynamicCache()
        cache.layers = [_hf_layer(layer) for layer in self.layers]
        return cache


def _hf_layer(ragged: RaggedLayer):
    class HfRaggedLayer(DynamicLayer):
        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.keys, self.values = ragged.write_step(key_states, value_states)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return ragged.cache.longest

    return HfRaggedLayer()


def has_sliding_window(config: Any) -> bool:
    """Whether a model with ``config`` has sliding-window attention layers (as its own cache sees them)."""
    return any(layer.is_sliding for layer in DynamicCache(config=config).layers)


def check_full_attention(model: nn.Module) -> None:
    """Refuse sliding-window targets: their caches drop old positions, which this one does not."""
    if has_sliding_window(model.config):
        raise Eagle3Error(
            "the target uses sliding-window attention, which the in-process generator does not implement",
            hint="use the vLLM backend for this target",
        )


def decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for one query position per row over the cache views, as two float32 batched
    products (``rows x kv_heads`` batches of the grouped query heads). Longer queries (prompts)
    go to torch's SDPA, in float32 on a CPU (its bf16 kernels are several times slower there)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, num_heads, query_length, head_dim = query.shape
    if query_length != 1:
        dtype = torch.float32 if query.device.type == "cpu" else query.dtype
        out, weights = sdpa_attention_forward(
            module, query.to(dtype), key.to(dtype), value.to(dtype), attention_mask,
            dropout=dropout, scaling=scaling, **kwargs,
        )
        return out.to(query.dtype), weights
    num_kv_heads, kv_length = key.shape[1], key.shape[2]
    group = num_heads // num_kv_heads
    scale = scaling if scaling is not None else head_dim ** -0.5
    queries = query.reshape(batch * num_kv_heads, group, head_dim).to(key.dtype)
    scores = torch.bmm(queries, key.flatten(0, 1).transpose(1, 2)).view(batch, num_kv_heads, group, kv_length)
    scores = scores.float() * scale
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :kv_length]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(batch * num_kv_heads, group, kv_length)
    out = torch.bmm(probs, value.flatten(0, 1))
    return out.to(query.dtype).view(batch, num_heads, 1, head_dim).transpose(1, 2), None


def use_decode_attention(model: nn.Module) -> None:
    """Run ``model``'s attention through :func:`decode_attention` (masks built as for SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    model.set_attn_implementation(ATTENTION_NAME)


PREALLOCATED_MIN_CAPACITY = 256


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer whose ``keys``/``values`` (``[B, heads, length, head_dim]``,
    as in ``DynamicLayer``) are views of a buffer with room to grow: ``update`` writes the new
    positions in place and reallocates (doubling) only when the buffer is full."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer = self.value_buffer = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2]:
            self.key_buffer, self.value_buffer = (
                grown(buffer, states, start, end) for buffer, states in ((self.key_buffer, key_states), (self.value_buffer, value_states))
            )
        self.key_buffer[..., start:end, :] = key_states
        self.value_buffer[..., start:end, :] = value_states
        self.keys, self.values = self.key_buffer[..., :end, :], self.value_buffer[..., :end, :]
        return self.keys, self.values


def grown(buffer: torch.Tensor | None, like: torch.Tensor, length: int, needed: int) -> torch.Tensor:
    """A buffer shaped like ``like`` with room for ``needed`` positions (at least double the
    old one), holding the first ``length`` positions of ``buffer``."""
    capacity = max(needed, PREALLOCATED_MIN_CAPACITY, 0 if buffer is None else 2 * buffer.shape[-2])
    out = like.new_empty((*like.shape[:-2], capacity, like.shape[-1]))
    if buffer is not None and length:
        out[..., :length, :] = buffer[..., :length, :]
    return out


def new_cache() -> Cache:
    """An empty cache of :class:`PreallocatedLayer` (one per decoder layer, made on first use)."""
    return Cache(layer_class_to_replicate=PreallocatedLayer)
