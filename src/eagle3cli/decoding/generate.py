"""Speculative and target-only generation (batch size 1): one loop for both.

:func:`decode_steps` yields every step's result — the prompt forward's first token, then each
speculative (or target-only) step's tokens — and :func:`generate` collects them. Timing is the
caller's business (the bench owns clocks and device syncs); the core never waits on the device
except for what it must know on the host: a step's committed length and whether it stopped,
read in one transfer per step. (A target with ``partial_logits`` — eagle3's fused forward on a
CPU, where reading a value waits on nothing — also has the tree's shape read.)

Both take and return a :class:`~eagle3cli.decoding.state.DecodingState`, so a later turn
continues from an earlier one: pass the whole new context as ``input_ids`` with the earlier
``state``; the longest common prefix of both contexts is reused from the caches and only
the rest is run through the models. A state passed in is consumed (its caches are updated
in place); use ``state.clone()`` first to branch from it twice.

One speculative step (after the prompt forward):

1. Draft a tree under the pending token from the draft cache (:func:`draft_tree`).
2. One target forward over all tree nodes with the tree mask (positions = prefix + depth);
   the LM head only for the nodes with children when the target can (``partial_logits``).
3. Verify (greedy or sampled, one rule): the accepted path + the bonus token.
4. Cut the new tokens after a stop token or at the token budget; the one host read.
5. Compact the target cache to prefix + the kept path nodes (gather, no recomputation).
6. Feed the draft the pairs (new token, target hidden state of the kept node), which also
   yields the root of the next tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.state import (
    DecodingState,
    DraftModel,
    TargetModel,
    allocate_draft_cache,
    compiled_size,
    draft_extend,
    reserve,
)
from eagle3cli.decoding.tree import DraftTree, draft_tree, tree_attention_mask, tree_cache_capacity
from eagle3cli.decoding.verify import target_choices, verify, verify_inner
from eagle3cli.draft.attention import DraftKVCache


@dataclass(frozen=True)
class Step:
    """One step's result: ``tokens [M]`` committed (on the models' device), the draft tokens
    the step's tree held (0 for the prompt forward and target-only steps), whether generation
    ends here, and the state after it."""

    tokens: torch.Tensor
    num_draft_tokens: int
    done: bool
    state: DecodingState


@dataclass
class GenerationStats:
    """Per-call counts. ``accept_lengths[i]`` = tokens committed by decoding step ``i``
    (accepted draft tokens + the bonus token; 1 for every target-only step); the prompt
    forward's token is counted in ``num_new_tokens`` but is no step."""

    accept_lengths: list[int] = field(default_factory=list)
    num_draft_tokens: list[int] = field(default_factory=list)
    num_target_forwards: int = 0

    @property
    def num_new_tokens(self) -> int:
        return 1 + sum(self.accept_lengths)

    @property
    def mean_accept_length(self) -> float:
        """τ: tokens per decoding-step target forward (0 when no step ran)."""
        return sum(self.accept_lengths) / len(self.accept_lengths) if self.accept_lengths else 0.0


@dataclass
class Generation:
    """``tokens [num_new]``: the generated ids (ending at a stop token if one was produced)."""

    tokens: torch.Tensor
    stats: GenerationStats
    state: DecodingState


def cut_length(tokens: torch.Tensor, length: torch.Tensor, config: DecodingConfig, budget: int) -> torch.Tensor:
    """How many of ``tokens [M]`` to commit (0-d, on the device): the first ``length``, at most
    ``budget``, ending at the first stop token among them."""
    count = torch.clamp(length, max=budget)
    if config.stop_token_ids:
        stops = torch.tensor(config.stop_token_ids, device=tokens.device)
        index = torch.arange(tokens.numel(), device=tokens.device)
        first_stop = torch.where(torch.isin(tokens, stops), index, tokens.numel()).min()
        count = torch.minimum(count, first_stop + 1)
    return count


def read_outcome(tokens: torch.Tensor, count: torch.Tensor, config: DecodingConfig, num_generated: int) -> tuple[int, bool]:
    """The step's one host read: how many tokens it commits, and whether generation ends."""
    last = tokens.index_select(0, (count - 1).clamp(min=0).reshape(1))[0]
    length, last_token = torch.stack([count, last]).tolist()
    done = num_generated + length >= config.max_new_tokens or last_token in config.stop_token_ids
    return length, done


def _reusable_prefix(state: DecodingState | None, input_ids: torch.Tensor, needs_draft_cache: bool) -> int:
    """Cached positions both contexts share: common prefix length minus one (the first new
    forward must include the position before the new tokens, for its hidden state)."""
    if state is None or (needs_draft_cache and state.draft_cache is None):
        return 0
    length = min(state.tokens.numel(), input_ids.numel())
    differs = (state.tokens[:length] != input_ids[:length]).nonzero()
    common = int(differs[0, 0]) if differs.numel() else length
    return max(common - 1, 0)


def _draft_cache_size(needed: int, config: DecodingConfig) -> int:
    """Positions to ask of the draft cache: with ``compile_draft`` a :func:`compiled_size`, since
    a compiled draft level is one graph per cache size."""
    return compiled_size(needed) if config.compile_draft else needed


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
    first = target_choices(out.logits[0, -1], config, generator)
    tokens = torch.cat([input_ids, first.reshape(1)])
    if draft is None:
        return DecodingState(tokens, out.cache), first
    # 3. Draft forward over the pairs (token p + 1, target state at p) for p >= start.
    needed = tokens.numel() + config.max_new_tokens + tree_cache_capacity(config) + config.max_step_tokens
    draft_cache = _new_draft_cache(draft, state, _draft_cache_size(needed, config))
    draft_cache.truncate(start)
    hidden = draft_extend(draft, draft_cache, tokens[None, start + 1 :], out.aux_hidden)
    return DecodingState(tokens, out.cache, draft_cache, hidden[:, -1:]), first


def draft_step_tree(draft: DraftModel, state: DecodingState, config: DecodingConfig) -> tuple[DraftKVCache, DraftTree]:
    """A step's tree drafted from ``state``, and the draft cache it wrote (``state``'s, grown
    if it cannot hold the tree and the step's new tokens)."""
    cache = reserve(state.draft_cache, _draft_cache_size(state.cached_length + tree_cache_capacity(config) + config.max_step_tokens, config))
    return cache, draft_tree(draft, cache, state.draft_hidden, state.tokens[-1], config)


def tree_inputs(tree: DraftTree, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``[1, N]`` and attention mask ``[1, 1, N, prefix + N]`` of the tree's nodes
    verified after ``prefix`` cached tokens."""
    return (prefix + tree.depths)[None], tree_attention_mask(tree.mask, prefix)


@torch.no_grad()
def speculative_step(
    target: TargetModel,
    draft: DraftModel,
    state: DecodingState,
    config: DecodingConfig,
    num_generated: int,
    generator: torch.Generator | None = None,
) -> Step:
    """One draft-verify-compact step, ``num_generated`` tokens into the answer."""
    prefix = state.cached_length
    # 1-2. Draft the tree; verify all its nodes in one target forward (a target with
    #      ``partial_logits`` computes the LM head for the nodes with children only).
    draft_cache, tree = draft_step_tree(draft, state, config)
    inner = tree.inner_nodes() if getattr(target, "partial_logits", False) else None
    rows = {} if inner is None else {"logit_rows": inner}
    out = target.forward(tree.tokens[None], *tree_inputs(tree, prefix), state.target_cache, **rows)
    # 3. Accepted path ([D + 1], -1 past its depth) and bonus: the new tokens are the path's
    #    tokens after the root, then the bonus at index ``depth``.
    if inner is None:
        path, depth, bonus = verify(tree, out.logits[0], config, generator)
    else:
        path, depth, bonus = verify_inner(tree, inner, out.logits[0], out.head, config, generator)
    candidates = torch.cat([tree.tokens[path[1:].clamp(min=0)], bonus.reshape(1)])  # [D + 1]
    candidates = candidates.index_put((depth.reshape(1),), bonus.reshape(1))
    # 4. Cut at a stop token or the budget: the step's one host read.
    count = cut_length(candidates, depth + 1, config, config.max_new_tokens - num_generated)
    length, done = read_outcome(candidates, count, config, num_generated)
    new_tokens, kept = candidates[:length], path[:length]  # kept: the root and accepted nodes before the last new token
    # 5. Target cache: prefix + kept nodes.
    target_cache = target.keep(out.cache, prefix, prefix + kept)
    # 6. Draft: pairs (new token, target state of the kept node).
    hidden = draft_extend(draft, draft_cache, new_tokens[None], out.aux_hidden[:, kept])
    tokens = torch.cat([state.tokens, new_tokens])
    return Step(new_tokens, tree.num_nodes - 1, done, DecodingState(tokens, target_cache, draft_cache, hidden[:, -1:]))


@torch.no_grad()
def target_step(
    target: TargetModel,
    state: DecodingState,
    config: DecodingConfig,
    num_generated: int,
    generator: torch.Generator | None = None,
) -> Step:
    """One target-only step: consume the pending token, pick the next."""
    position = torch.tensor([[state.cached_length]], device=state.tokens.device)
    out = target.forward(state.tokens[None, -1:], position, None, state.target_cache, last_logits_only=True)
    token = target_choices(out.logits[0, -1], config, generator).reshape(1)
    _, done = read_outcome(token, torch.ones((), dtype=torch.long, device=token.device), config, num_generated)
    return Step(token, 0, done, DecodingState(torch.cat([state.tokens, token]), out.cache))


def decode_steps(
    target: TargetModel,
    draft: DraftModel | None,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Step]:
    """Generate after ``input_ids [L]`` (or ``[1, L]``), one :class:`Step` at a time: first the
    prompt forward's token, then speculative steps (``draft`` given) or target-only steps, until
    a stop token or ``max_new_tokens``.

    ``state``: a previous generation's last ``Step.state`` to continue from (``input_ids`` is
    then the whole new context). ``input_ids`` and ``generator`` live on the models' device.
    """
    state, first = extend_context(target, draft, input_ids.reshape(-1), config, state, generator)
    first = first.reshape(1)
    _, done = read_outcome(first, torch.ones((), dtype=torch.long, device=first.device), config, 0)
    step = Step(first, 0, done, state)
    yield step
    num_generated = 1
    while not step.done:
        if draft is None:
            step = target_step(target, step.state, config, num_generated, generator)
        else:
            step = speculative_step(target, draft, step.state, config, num_generated, generator)
        num_generated += step.tokens.numel()
        yield step


def generate(
    target: TargetModel,
    draft: DraftModel | None,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """:func:`decode_steps` collected: the new tokens, the per-step counts and the final state."""
    steps = decode_steps(target, draft, input_ids, config, state=state, generator=generator)
    prompt_step = next(steps)
    pieces, stats, last = [prompt_step.tokens], GenerationStats(num_target_forwards=1), prompt_step
    for last in steps:
        pieces.append(last.tokens)
        stats.accept_lengths.append(last.tokens.numel())
        stats.num_draft_tokens.append(last.num_draft_tokens)
        stats.num_target_forwards += 1
    return Generation(torch.cat(pieces), stats, last.state)


def speculative_generate(
    target: TargetModel,
    draft: DraftModel,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """EAGLE-3 speculative decoding (:func:`generate` with the draft). The output distribution
    is the target's: at ``temperature = 0`` the tokens equal :func:`baseline_generate`'s."""
    return generate(target, draft, input_ids, config, state=state, generator=generator)


def baseline_generate(
    target: TargetModel,
    input_ids: torch.Tensor,
    config: DecodingConfig,
    *,
    state: DecodingState | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Target-only decoding with the same sampling, stopping and state as :func:`speculative_generate`."""
    return generate(target, None, input_ids, config, state=state, generator=generator)
