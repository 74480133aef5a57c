"""Speculative and target-only generation loops (batch size 1).

Both take and return a :class:`~eagle3cli.decoding.state.DecodingState`, so a later turn
continues from an earlier one: pass the whole new context as ``input_ids`` with the earlier
``state``; the longest common prefix of both contexts is reused from the caches and only
the rest is run through the models. A state passed in is consumed (its caches are updated
in place); use ``state.clone()`` first to branch from it twice.

One speculative step (after the prompt forward):

1. Draft a tree under the pending token from the draft cache (:func:`draft_tree`).
2. One target forward over all tree nodes with the tree mask (positions = prefix + depth).
3. Verify (greedy or tree speculative sampling): accepted path + bonus token.
4. Cut the new tokens after a stop token or at ``max_new_tokens``.
5. Compact the target cache to prefix + the kept path nodes (gather, no recomputation).
6. Feed the draft the pairs (new token, target hidden state of the kept node), which also
   yields the root of the next tree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.state import (
    DecodingState,
    DraftModel,
    TargetModel,
    allocate_draft_cache,
    draft_extend,
    reserve,
)
from eagle3cli.decoding.tree import draft_tree, tree_attention_mask, tree_cache_capacity
from eagle3cli.decoding.verify import next_token, verify


@dataclass
class GenerationStats:
    """Per-call statistics. ``accept_lengths[i]`` = tokens committed by decoding step ``i``
    (accepted draft tokens + the bonus token; 1 for every target-only step); the prompt
    forward's token is counted in ``num_new_tokens`` but is no step."""

    accept_lengths: list[int] = field(default_factory=list)
    num_draft_tokens: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    num_target_forwards: int = 0
    prefill_seconds: float = 0.0

    @property
    def num_new_tokens(self) -> int:
        return 1 + sum(self.accept_lengths)

    @property
    def mean_accept_length(self) -> float:
        """τ: tokens per decoding-step target forward (0 when no step ran)."""
        return sum(self.accept_lengths) / len(self.accept_lengths) if self.accept_lengths else 0.0

    @property
    def total_seconds(self) -> float:
        return self.prefill_seconds + sum(self.step_seconds)


@dataclass
class Generation:
    """``tokens [num_new]``: the generated ids (ending at a stop token if one was produced)."""

    tokens: torch.Tensor
    stats: GenerationStats
    state: DecodingState


def _clock(device: torch.device) -> float:
    """Wall time, after the device's queued work (so step timings are real)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def cut_at_stop(tokens: torch.Tensor, config: DecodingConfig, budget: int) -> torch.Tensor:
    """At most ``budget`` of ``tokens [M]``, ending at the first stop token if any."""
    tokens = tokens[:budget]
    if config.stop_token_ids:
        stops = torch.tensor(config.stop_token_ids, device=tokens.device)
        hits = torch.isin(tokens, stops).nonzero()
        if hits.numel():
            return tokens[: int(hits[0, 0]) + 1]
    return tokens


def _reusable_prefix(state: DecodingState | None, input_ids: torch.Tensor, needs_draft_cache: bool) -> int:
    """Cached positions both contexts share: common prefix length minus one (the first new
    forward must include the position before the new tokens, for its hidden state)."""
    if state is None or (needs_draft_cache and state.draft_cache is None):
        return 0
    length = min(state.tokens.numel(), input_ids.numel())
    differs = (state.tokens[:length] != input_ids[:length]).nonzero()
    common = int(differs[0, 0]) if differs.numel() else length
    return max(common - 1, 0)


def _new_draft_cache(draft: DraftModel, state: DecodingState | None, needed: int):
    if state is None or state.draft_cache is None:
        return allocate_draft_cache(draft, needed)
    return reserve(state.draft_cache, needed)


@torch.no_grad()
def extend_context(
    target: TargetModel,
    draft: DraftModel | None,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> tuple[DecodingState, torch.Tensor]:
    """Run the context ``input_ids [L]`` (reusing ``state``'s caches for the shared prefix)
    and pick the first new token. Returns the state (that token pending) and the token."""
    # 1. Roll both caches back to the shared prefix.
    start = _reusable_prefix(state, input_ids, needs_draft_cache=draft is not None)
    target_cache = target.crop(state.target_cache, start) if state is not None else None
    # 2. Target forward over the rest: first new token and capture states.
    positions = torch.arange(start, input_ids.numel(), device=input_ids.device)[None]
    out = target.forward(input_ids[None, start:], positions, None, target_cache, last_logits_only=True)
    first = next_token(out.logits[0, -1], config, generator)
    tokens = torch.cat([input_ids, first.reshape(1)])
    if draft is None:
        return DecodingState(tokens, out.cache), first
    # 3. Draft forward over the pairs (token p + 1, target state at p) for p >= start.
    needed = tokens.numel() + config.max_new_tokens + tree_cache_capacity(config) + config.max_step_tokens
    draft_cache = _new_draft_cache(draft, state, needed)
    draft_cache.truncate(start)
    hidden = draft_extend(draft, draft_cache, tokens[None, start + 1 :], out.aux_hidden)
    return DecodingState(tokens, out.cache, draft_cache, hidden[:, -1:]), first


@torch.no_grad()
def speculative_step(
    target: TargetModel,
    draft: DraftModel,
    state: DecodingState,
    config: DecodingConfig,
    budget: int,
    generator: torch.Generator | None = None,
) -> tuple[DecodingState, torch.Tensor, int]:
    """One draft-verify-compact step. Returns (state, new tokens ``[M]``, tree draft tokens)."""
    prefix = state.cached_length
    draft_cache = reserve(state.draft_cache, prefix + tree_cache_capacity(config) + config.max_step_tokens)
    # 1-2. Draft the tree; verify all its nodes in one target forward.
    tree = draft_tree(draft, draft_cache, state.draft_hidden, state.tokens[-1], config)
    positions = (prefix + tree.depths)[None]  # [1, N]
    mask = tree_attention_mask(tree.mask, prefix)  # [1, 1, N, prefix + N]
    out = target.forward(tree.tokens[None], positions, mask, state.target_cache)
    # 3-4. Accepted path + bonus, cut at a stop token or the budget.
    nodes, bonus = verify(tree, out.logits[0], config, generator)
    new_tokens = cut_at_stop(torch.cat([tree.tokens[nodes[1:]], bonus.reshape(1)]), config, budget)
    kept = nodes[: new_tokens.numel()]  # the root and the accepted nodes before the last new token
    # 5. Target cache: prefix + kept nodes.
    target_cache = target.keep(out.cache, prefix, prefix + kept)
    # 6. Draft: pairs (new token, target state of the kept node).
    hidden = draft_extend(draft, draft_cache, new_tokens[None], out.aux_hidden[:, kept])
    tokens = torch.cat([state.tokens, new_tokens])
    return DecodingState(tokens, target_cache, draft_cache, hidden[:, -1:]), new_tokens, tree.num_nodes - 1


@torch.no_grad()
def target_step(
    target: TargetModel, state: DecodingState, config: DecodingConfig, generator: torch.Generator | None = None
) -> tuple[DecodingState, torch.Tensor]:
    """One target-only step: consume the pending token, pick the next. Returns (state, token)."""
    position = torch.tensor([[state.cached_length]], device=state.tokens.device)
    out = target.forward(state.tokens[None, -1:], position, None, state.target_cache, last_logits_only=True)
    token = next_token(out.logits[0, -1], config, generator)
    return DecodingState(torch.cat([state.tokens, token.reshape(1)]), out.cache), token


def _is_done(new_tokens: torch.Tensor, config: DecodingConfig, num_generated: int) -> bool:
    """Whether generation ends after ``new_tokens`` (already cut: a stop token can only be last)."""
    return num_generated >= config.max_new_tokens or int(new_tokens[-1]) in config.stop_token_ids


def _first_token(
    target: TargetModel,
    draft: DraftModel | None,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    state: DecodingState | None,
    generator: torch.Generator | None,
) -> tuple[DecodingState, torch.Tensor, GenerationStats]:
    """The prompt forward, timed: (state, first token ``[1]``, stats)."""
    input_ids = input_ids.reshape(-1)
    stats = GenerationStats(num_target_forwards=1)
    started = _clock(input_ids.device)
    state, first = extend_context(target, draft, input_ids, config, state, generator)
    stats.prefill_seconds = _clock(input_ids.device) - started
    return state, first.reshape(1), stats


def speculative_generate(
    target: TargetModel,
    draft: DraftModel,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Generate after ``input_ids [L]`` (or ``[1, L]``) with EAGLE-3 speculative decoding.

    ``state``: a previous call's ``Generation.state`` to continue from (``input_ids`` is then
    the whole new context). ``input_ids`` and ``generator`` live on the models' device.
    The output distribution is the target's: at ``temperature = 0`` the tokens equal
    :func:`baseline_generate`'s.
    """
    state, first, stats = _first_token(target, draft, input_ids, config, state, generator)
    pieces = [first]
    num_generated = 1
    while not _is_done(pieces[-1], config, num_generated):
        started = _clock(first.device)
        budget = config.max_new_tokens - num_generated
        state, new_tokens, num_draft = speculative_step(target, draft, state, config, budget, generator)
        stats.step_seconds.append(_clock(first.device) - started)
        stats.accept_lengths.append(new_tokens.numel())
        stats.num_draft_tokens.append(num_draft)
        stats.num_target_forwards += 1
        pieces.append(new_tokens)
        num_generated += new_tokens.numel()
    return Generation(torch.cat(pieces), stats, state)


def baseline_generate(
    target: TargetModel,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Target-only decoding with the same sampling, stopping and state as :func:`speculative_generate`."""
    state, first, stats = _first_token(target, None, input_ids, config, state, generator)
    pieces = [first]
    while not _is_done(pieces[-1], config, len(pieces)):
        started = _clock(first.device)
        state, token = target_step(target, state, config, generator)
        stats.step_seconds.append(_clock(first.device) - started)
        stats.accept_lengths.append(1)
        stats.num_target_forwards += 1
        pieces.append(token.reshape(1))
    return Generation(torch.cat(pieces), stats, state)
