"""Verification of a draft tree against the target's logits, and token sampling.

Greedy (``temperature == 0``): the longest root-to-leaf path whose every token equals the
target's argmax at its parent, plus the target's argmax after it (the bonus token).

Sampling (``temperature > 0``), tree speculative sampling. EAGLE-2 picks tree nodes
deterministically (top-k), so a node's proposal distribution is a point mass on its token:
the rejection rule ``accept with min(1, p(x) / q(x))`` becomes ``accept with p(x)`` and the
residual ``norm(max(p - q, 0))`` becomes ``p`` with ``x`` removed. Walking down from the root:

1. ``p`` = the target's distribution (temperature, top-p) at the current node.
2. Try the children in order: accept child ``x`` with probability ``p(x)``; on rejection set
   ``p(x) = 0`` and renormalise before trying the next sibling.
3. On acceptance descend into the child and go to 1; when every child is rejected (or the
   node is a leaf), sample the bonus token from the residual ``p``.

Every committed token is thereby distributed exactly as the target's sampling
distribution: the procedure is lossless whatever the draft proposes.
"""

from __future__ import annotations

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
    """One token id (0-d long tensor) from ``probs [V]``."""
    return torch.multinomial(probs, 1, generator=generator)[0]


def next_token(logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """The target's next token from ``logits [V]``: argmax, or a sample at ``temperature > 0``."""
    if config.greedy:
        return logits.argmax(dim=-1)
    return sample(sampling_probs(logits, config.temperature, config.top_p), generator)


def greedy_verify(tree: DraftTree, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits [N, V]`` at every node → (accepted nodes ``[a + 1]`` from the root, bonus token)."""
    predicted = logits.argmax(dim=-1)  # [N]: the target's token after each node
    children, parents = tree.paths[:, 1:], tree.paths[:, :-1]  # [P, D]
    matches = (children >= 0) & (tree.tokens[children.clamp(min=0)] == predicted[parents.clamp(min=0)])
    accepted = matches.long().cumprod(dim=1).sum(dim=1)  # [P]
    best = int(accepted.argmax())
    nodes = tree.paths[best, : int(accepted[best]) + 1]
    return nodes, predicted[nodes[-1]]


def try_proposal(
    probs: torch.Tensor, token: int, generator: torch.Generator | None
) -> tuple[bool, torch.Tensor]:
    """Accept the deterministic proposal ``token`` with probability ``probs[token]``.

    Returns (accepted, ``probs``); after a rejection ``probs`` is the residual, the target
    distribution with ``token`` removed. ``probs [V]`` is modified in place.
    """
    probability = float(probs[token])
    if float(torch.rand((), generator=generator, device=probs.device)) < probability:
        return True, probs
    probs[token] = 0.0
    total = float(probs.sum())
    if total <= 0.0:  # all mass was on ``token``: rejection had probability zero
        return True, probs
    return False, probs / total


def stochastic_verify(
    tree: DraftTree, logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tree speculative sampling over ``logits [N, V]`` → (accepted nodes, bonus token)."""
    probs = sampling_probs(logits, config.temperature, config.top_p)  # [N, V]
    children = tree.children()
    tokens = tree.tokens.tolist()
    nodes = [0]
    while True:
        residual = probs[nodes[-1]].clone()
        for child in children[nodes[-1]]:
            accepted, residual = try_proposal(residual, tokens[child], generator)
            if accepted:
                nodes.append(child)
                break
        else:
            node_tensor = torch.tensor(nodes, dtype=torch.long, device=logits.device)
            return node_tensor, sample(residual, generator)


def verify(
    tree: DraftTree, logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy or stochastic verification, as ``config.temperature`` says."""
    if config.greedy:
        return greedy_verify(tree, logits)
    return stochastic_verify(tree, logits, config, generator)
