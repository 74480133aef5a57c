"""Attention back-ends for the draft layer: plain causal, and a KV cache for decoding.

The draft layer computes rotated ``q, k, v`` and hands them to an *attend* callable, so
training (training-time test) and decoding (tree drafting over a KV cache) share the layer
and differ only in which keys a query may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


class AttendFn(Protocol):
    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``query [B, heads, T, D]``, ``key/value [B, kv_heads, T, D]`` → ``[B, heads, T, D]``."""
        ...


def causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Causal self-attention over the given tokens only (no cache)."""
    return F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True)


def causal_mask_with_prefix(num_new: int, prefix_length: int, device: torch.device) -> torch.Tensor:
    """``[1, 1, num_new, prefix_length + num_new]`` bool: every new token sees the prefix and
    the new tokens up to itself."""
    ones = torch.ones(num_new, prefix_length + num_new, dtype=torch.bool, device=device)
    return ones.tril(diagonal=prefix_length)[None, None]


@dataclass
class DraftKVCache:
    """Preallocated keys/values of the draft layer: ``[batch, kv_heads, capacity, head_dim]``.

    ``length`` positions are valid. Decoding appends the prompt, then tree nodes, and
    ``truncate`` drops the rejected ones; no tensor is reallocated.
    """

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0

    @classmethod
    def allocate(
        cls,
        batch_size: int,
        num_key_value_heads: int,
        head_dim: int,
        capacity: int,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> "DraftKVCache":
        shape = (batch_size, num_key_value_heads, capacity, head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key/value [B, kv_heads, T, D]`` after the valid part; return all valid keys/values."""
        end = self.length + key.shape[2]
        if end > self.capacity:
            raise ValueError(f"draft KV cache overflow: {end} > capacity {self.capacity}")
        self.keys[:, :, self.length : end] = key
        self.values[:, :, self.length : end] = value
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` positions."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a draft KV cache of length {self.length} to {length}")
        self.length = length


@dataclass
class CachedAttention:
    """Attend over ``cache`` plus the new tokens, under ``mask`` (bool, True = may attend).

    ``mask`` is ``[B or 1, 1, T_new, cache.length + T_new]``; ``None`` means causal over the
    new tokens with the whole cached prefix visible.
    """

    cache: DraftKVCache
    mask: torch.Tensor | None = None

    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        prefix_length = self.cache.length
        keys, values = self.cache.append(key, value)
        mask = self.mask
        if mask is None and query.shape[2] > 1:
            mask = causal_mask_with_prefix(query.shape[2], prefix_length, query.device)
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, enable_gqa=True)


@dataclass
class StaticCachedAttention:
    """Attention over a draft cache's whole buffers, for a compiled draft level: the new keys and
    values are written at ``positions`` (``[T]``, a device tensor) and the query attends over all
    ``capacity`` positions under ``mask`` (``[1, 1, T, capacity]``, False past the valid ones), so
    every level of every tree has the same shapes. The caller advances ``DraftKVCache.length``."""

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor

    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        self.keys.index_copy_(2, self.positions, key)
        self.values.index_copy_(2, self.positions, value)
        return F.scaled_dot_product_attention(query, self.keys, self.values, attn_mask=self.mask, enable_gqa=True)
