"""What the decoder talks to and what it carries between steps.

The decoder core sees the target through :class:`TargetModel` (forward with an explicit
4D mask and position ids, plus cache keep/crop) and the draft through :class:`DraftModel`
(the methods of :class:`~eagle3cli.draft.model.Eagle3DraftModel`). Everything that lives
from one step to the next sits in :class:`DecodingState`, which every call takes and
returns — nothing is stashed on a model.

Sequence convention: ``state.tokens`` holds the whole context **including one pending
token** — the last generated token, which the target has not run yet. The target cache
therefore holds ``len(tokens) - 1`` positions, and so does the draft cache, whose entry
``p`` was computed from the pair (token ``p + 1``, target hidden state at ``p``): the
pending token is the token half of its last pair.

Draft-cache entries written while drafting a tree come from the draft's own hidden states;
they are dropped after each step, and the accepted tokens are fed again with the target's
real hidden states (one draft forward over at most ``depth + 2`` tokens, which also gives
the next tree's root) — as in EAGLE. So both caches always equal a fresh forward over the
committed context.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from eagle3cli.draft.attention import AttendFn, CachedAttention, DraftKVCache


@dataclass
class TargetOutput:
    """One target forward: ``logits [1, T, V]``, ``aux_hidden [1, T, 3 * Ht]`` and the grown cache.

    A forward asked for ``logit_rows [R]`` only (see :class:`TargetModel`) returns their logits
    ``[1, R, V]`` and ``head``: the LM head over any other rows of the same forward
    (``rows [K]`` → ``[K, V]``)."""

    logits: torch.Tensor
    aux_hidden: torch.Tensor
    cache: Any
    head: Callable[[torch.Tensor], torch.Tensor] | None = None


class TargetModel(Protocol):
    """A causal LM that verifies under an arbitrary mask and exposes its capture layers.

    A target whose ``partial_logits`` attribute is True (optional; absent means False) also
    takes ``logit_rows=`` in ``forward``: compute the LM head for those rows only, and return
    :attr:`TargetOutput.head` for the rest."""

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
        *,
        last_logits_only: bool = False,
    ) -> TargetOutput:
        """``input_ids/position_ids [1, T]``; ``mask [1, 1, T, cached + T]`` bool (True =
        attend) or ``None`` for causal over the cached prefix; ``cache`` ``None`` when empty."""
        ...

    def keep(self, cache: Any, start: int, positions: torch.Tensor) -> Any:
        """Keep cache ``[:start]`` plus absolute ``positions`` (ascending), moved to follow it."""
        ...

    def crop(self, cache: Any, length: int) -> Any:
        """Keep the first ``length`` cached positions."""
        ...


class DraftModel(Protocol):
    """The decoding face of :class:`~eagle3cli.draft.model.Eagle3DraftModel`."""

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor: ...

    def fuse(self, aux_hidden: torch.Tensor) -> torch.Tensor: ...

    def layer(
        self, input_embeds: torch.Tensor, hidden: torch.Tensor, position_ids: torch.Tensor, attend: AttendFn
    ) -> torch.Tensor: ...

    def logits(self, hidden: torch.Tensor) -> torch.Tensor: ...

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor: ...


@dataclass
class DecodingState:
    """Everything carried across steps and turns (batch size 1).

    ``tokens [L]``: the context, the last entry pending. ``target_cache``: ``L - 1``
    positions (``None`` when empty). ``draft_cache`` (``L - 1`` positions) and
    ``draft_hidden [1, 1, H]`` (the draft layer's output at the last cached position, the
    root of the next tree) are ``None`` for target-only decoding.
    """

    tokens: torch.Tensor
    target_cache: Any
    draft_cache: DraftKVCache | None = None
    draft_hidden: torch.Tensor | None = None

    @property
    def cached_length(self) -> int:
        """Positions held by each cache (the context minus the pending token)."""
        return self.tokens.numel() - 1

    def clone(self) -> "DecodingState":
        """An independent copy (decoding updates caches in place; clone to branch)."""
        return copy.deepcopy(self)


def draft_parameter(draft: DraftModel) -> torch.Tensor:
    """Any draft parameter: the device and dtype for the draft's cache and inputs."""
    return next(draft.parameters())  # type: ignore[attr-defined]


def allocate_draft_cache(draft: DraftModel, capacity: int) -> DraftKVCache:
    """An empty draft KV cache sized from the draft's config."""
    config = draft.config  # type: ignore[attr-defined]
    weight = draft_parameter(draft)
    return DraftKVCache.allocate(
        1, config.num_key_value_heads, config.head_dim, capacity, device=weight.device, dtype=weight.dtype
    )


COMPILED_MIN_SIZE = 256


def compiled_size(needed: int, minimum: int = COMPILED_MIN_SIZE) -> int:
    """A cache size for compiled forwards, which get one graph per size: the smallest power of
    two that holds ``needed`` positions, at least ``minimum``."""
    return max(minimum, 1 << (needed - 1).bit_length())


def reserve(cache: DraftKVCache, needed: int) -> DraftKVCache:
    """``cache`` if it holds ``needed`` positions, else a copy with doubled capacity."""
    if needed <= cache.capacity:
        return cache
    shape = list(cache.keys.shape)
    shape[2] = max(needed, 2 * cache.capacity)
    grown = DraftKVCache(cache.keys.new_zeros(shape), cache.values.new_zeros(shape), cache.length)
    grown.keys[:, :, : cache.length] = cache.keys[:, :, : cache.length]
    grown.values[:, :, : cache.length] = cache.values[:, :, : cache.length]
    return grown


def draft_forward(
    draft: DraftModel,
    cache: DraftKVCache,
    token_ids: torch.Tensor,
    hidden: torch.Tensor,
    position_ids: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """One draft layer pass over ``token_ids [1, T]`` (target ids) and ``hidden [1, T, H]``,
    appending to ``cache``; ``mask`` as in :class:`CachedAttention`. Returns ``[1, T, H]``."""
    return draft_pass(draft, token_ids, hidden, position_ids, CachedAttention(cache, mask))


def draft_pass(draft: DraftModel, token_ids: torch.Tensor, hidden: torch.Tensor, position_ids: torch.Tensor,
               attend: AttendFn) -> torch.Tensor:
    """The draft layer over ``token_ids [1, T]``'s embeddings and ``hidden [1, T, H]``, its
    attention through ``attend`` (which owns the cache). Returns ``[1, T, H]``."""
    embeds = draft.embed(token_ids).to(hidden.dtype)
    return draft.layer(embeds, hidden, position_ids, attend)


def draft_extend(
    draft: DraftModel, cache: DraftKVCache, next_tokens: torch.Tensor, aux_hidden: torch.Tensor
) -> torch.Tensor:
    """Feed the pairs (``next_tokens [1, T]``, target ``aux_hidden [1, T, 3 * Ht]``) at the
    positions following ``cache``; return the layer output ``[1, T, H]``."""
    weight = draft_parameter(draft)
    hidden = draft.fuse(aux_hidden.to(weight.dtype))  # [1, T, H]
    start = cache.length
    positions = torch.arange(start, start + next_tokens.shape[1], device=weight.device)[None]
    return draft_forward(draft, cache, next_tokens, hidden, positions)
