"""Verification of a draft tree against the target's logits, and token sampling — without
host synchronisation: every step is tensor operations on the device.

Greedy and sampled verification are one rule. Each tree node ``v`` gets the target's choice
``x_v`` after it: the argmax (``temperature == 0``) or one draw from the target's sampling
distribution (temperature, top-p), drawn for all nodes at once (exponential race, no host
sync). A draft node is *accepted* when its token equals its parent's choice and its parent
is accepted; the root always is. The deepest accepted node ``b`` ends the committed path and
``x_b`` is the bonus token.

Why the sampled rule is lossless. EAGLE-2 picks tree nodes deterministically (top-k), so a
node's proposal distribution is a point mass on its token, and tree speculative sampling at
a node — try the children in order, accept child ``c`` with probability ``p(c)`` after
renormalising ``p`` over what earlier rejections left, sample the bonus from the residual
``p`` without the children — accepts child ``c`` with probability exactly ``p(c)`` and ends
with bonus ``y`` (not a child) with probability exactly ``p(y)``. That is the law of one
draw ``x ~ p``: descend to the child whose token is ``x``, or stop with bonus ``x``. Siblings
hold distinct tokens, so at most one child matches; each node on the walk uses its own
independent draw, so every committed token is distributed as the target's sampling would
give it, whatever the draft proposed.

Only the choices of nodes with children decide acceptance (a node is compared with its
parent's choice), so :func:`verify_inner` takes the logits of those nodes alone and the bonus
from a leaf's logits when the path ends there — a host read, for targets that compute the LM
head per row on a CPU, where reading a value is no synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.tree import DraftTree


def sampling_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """``logits [..., V]`` → the sampling distribution ``[..., V]`` (fp32) after temperature and top-p."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Drop a token once the more probable ones already reach ``top_p`` (the first always stays).
    drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token id per row of ``probs [..., V]`` (exponential race: ``argmax(p / E)`` with
    ``E ~ Exp(1)`` is a draw from ``p``, and needs no host sync, unlike ``torch.multinomial``)."""
    race = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / race).argmax(dim=-1)


def target_choices(logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """The target's token after each row of ``logits [..., V]``: argmax, or a draw at ``temperature > 0``.
    The argmax runs in float32 (exact for half-precision logits, same first index on ties): a
    CPU's bf16 argmax is ~5x slower (1.3 ms over a 16-node tree of a 49k vocabulary)."""
    if config.greedy:
        return logits.float().argmax(dim=-1)
    return sample(sampling_probs(logits, config.temperature, config.top_p), generator)


def accepted_path(tree: DraftTree, choices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``choices [N]`` (the target's token after each node) → (the deepest accepted node's
    path ``[D + 1]`` from the root, padded with -1; its depth, 0-d; the bonus token, 0-d)."""
    parents = tree.parents.clamp(min=0)
    matches = tree.tokens == choices[parents]  # [N]: node agrees with its parent's choice
    matches[0] = True  # the root is already committed
    accepted = ~(tree.mask & ~matches[None, :]).any(dim=1)  # [N]: every ancestor matches too
    # At most one node per depth is accepted (siblings differ), so the deepest one is unique.
    best = torch.where(accepted, tree.depths, -1).argmax()
    return tree.node_paths[best], tree.depths[best], choices[best]


def verify(
    tree: DraftTree, logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits [N, V]`` at every node → :func:`accepted_path` (greedy or sampled, as
    ``config.temperature`` says)."""
    return accepted_path(tree, target_choices(logits, config, generator))


def verify_inner(
    tree: DraftTree,
    inner: torch.Tensor,
    logits: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    config: DecodingConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`verify` from the logits ``[R, V]`` of ``inner [R]`` only (``tree.inner_nodes()``: the
    root and the nodes with a child). When the deepest accepted node is a leaf, its choice (the
    bonus) comes from ``head(node [1]) → [1, V]``. The same law as :func:`verify`: every node's
    choice is still its own draw."""
    choices = torch.full((tree.num_nodes,), -1, dtype=torch.long, device=logits.device)
    choices[inner] = target_choices(logits, config, generator)
    path, depth, bonus = accepted_path(tree, choices)
    if bonus < 0:  # the path ends at a leaf
        bonus = target_choices(head(path[depth].reshape(1)), config, generator)[0]
    return path, depth, bonus
