"""Verification rules, on hand-made trees and fixed-logit (Markov) fake target/draft models."""

from __future__ import annotations

import math

import pytest
import torch

from builders.decoding import MarkovDraft, MarkovTarget, single_thread  # noqa: F401
from eagle3cli.decoding import DecodingConfig, speculative_generate
from eagle3cli.decoding.tree import build_tree
from eagle3cli.decoding.verify import accepted_path, sampling_probs, verify, verify_inner

V = 8
NEXT = (torch.arange(V) + 3) % V  # the token the fakes favour after each token
NEVER = -1e4  # a logit whose probability is exactly 0 in float32


def _tree(tokens, parents):
    depth = 0
    for node, parent in enumerate(parents):
        hops, ancestor = 0, parent
        while ancestor >= 0:
            hops, ancestor = hops + 1, parents[ancestor]
        depth = max(depth, hops)
    return build_tree(torch.tensor(tokens), torch.tensor(parents), torch.zeros(len(tokens)), depth)


def _one_hot_logits(predictions, vocab=V):
    logits = torch.zeros(len(predictions), vocab)
    logits[torch.arange(len(predictions)), torch.tensor(predictions)] = 5.0
    return logits


def committed(tree, path, depth, bonus) -> list[int]:
    """The tokens a verification commits: the accepted path's tokens after the root, then the bonus."""
    nodes = path[1 : int(depth) + 1]
    return tree.tokens[nodes].tolist() + [int(bonus)]


def inner_rows(tree, logits):
    """What a ``partial_logits`` target hands :func:`verify_inner`: the inner nodes' logits, and
    a head over the rest that records which rows it was asked for."""
    inner = tree.inner_nodes()
    asked: list[list[int]] = []

    def head(rows):
        asked.append(rows.tolist())
        return logits[rows]

    return inner, logits[inner], head, asked


def verify_either(rule, tree, logits, config, generator):
    """``rule`` "all rows": :func:`verify`; "inner rows": :func:`verify_inner`."""
    if rule == "all rows":
        return verify(tree, logits, config, generator)
    inner, inner_logits, head, _ = inner_rows(tree, logits)
    return verify_inner(tree, inner, inner_logits, head, config, generator)


def test_greedy_verify_takes_the_longest_matching_path_and_the_bonus():
    tree = _tree([0, 1, 2, 3, 4], [-1, 0, 0, 2, 2])  # root → {1, 2}; 2 → {3, 4}
    greedy = DecodingConfig(temperature=0)
    path, depth, bonus = verify(tree, _one_hot_logits([2, 7, 4, 7, 6]), greedy, None)
    assert path.tolist() == [0, 2, 4] and int(depth) == 2 and int(bonus) == 6
    path, depth, bonus = verify(tree, _one_hot_logits([5, 7, 4, 7, 6]), greedy, None)
    assert path[: int(depth) + 1].tolist() == [0] and int(bonus) == 5


def test_verifying_from_the_inner_nodes_logits_asks_the_head_only_for_a_leaf_that_ends_the_path():
    """The root and node 2 have children; nodes 1, 3 and 4 are leaves. The same path and bonus
    as from every node's logits; the head is asked for one row, and only when the path ends at a leaf."""
    tree = _tree([0, 1, 2, 3, 4], [-1, 0, 0, 2, 2])
    assert tree.inner_nodes().tolist() == [0, 2]
    assert _tree([0], [-1]).inner_nodes().tolist() == [0]
    greedy = DecodingConfig(temperature=0)
    for choices, ends_at, asked_for in [([2, 7, 4, 7, 6], [0, 2, 4], [[4]]),  # leaf 4 accepted: its row
                                        ([2, 7, 5, 7, 6], [0, 2], []),  # inner node 2 ends it: no extra row
                                        ([1, 7, 4, 7, 6], [0, 1], [[1]]),  # leaf 1 at depth 1
                                        ([6, 7, 4, 7, 6], [0], [])]:  # only the root
        logits = _one_hot_logits(choices)
        inner, inner_logits, head, asked = inner_rows(tree, logits)
        got = verify_inner(tree, inner, inner_logits, head, greedy, None)
        expected = verify(tree, logits, greedy, None)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        assert got[0][: int(got[1]) + 1].tolist() == ends_at and asked == asked_for


def test_a_match_below_a_rejected_node_is_not_accepted():
    tree = _tree([0, 1, 2, 3], [-1, 0, 1, 2])  # a chain
    path, depth, bonus = accepted_path(tree, torch.tensor([1, 5, 3, 6]))  # node 2 rejected, node 3 would match
    assert int(depth) == 1 and committed(tree, path, depth, bonus) == [1, 5]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    torch.testing.assert_close(sampling_probs(logits, 1.0, 0.8), torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert (sampling_probs(logits, 1.0, 0.81) > 0).sum() == 3
    assert (sampling_probs(logits, 1.0, 0.01) > 0).sum() == 1
    torch.testing.assert_close(sampling_probs(logits, 1.0, 1.0), torch.tensor([0.5, 0.3, 0.15, 0.05]))


@pytest.mark.parametrize("rule", ["all rows", "inner rows"])
def test_sampled_verification_of_a_tree_with_three_siblings_reproduces_the_target_distribution(rule):
    """Root → three children (tokens 3, 2, 1); child 3 → two children (tokens 0, 1). Whatever
    the tree, the first two committed tokens must follow the target: ``p_root(t1)`` times the
    distribution after ``t1`` (at the child node holding ``t1``), or ``t1`` alone when no child
    holds it (the step ends with that bonus token). Chi-square over 20,000 verifications, with
    every node's logits and with the inner nodes' only (a leaf's bonus drawn from its own row later)."""
    from test_decoding_sampling import chi_square, chi_square_limit

    tree = _tree([9, 3, 2, 1, 0, 1], [-1, 0, 0, 0, 1, 1])
    node_probs = torch.tensor([
        [0.1, 0.2, 0.3, 0.4],  # root: its children 3, 2, 1 hold 0.9 of the mass
        [0.25, 0.25, 0.4, 0.1],  # node 1 (token 3)
        [0.7, 0.1, 0.1, 0.1],  # node 2 (token 2)
        [0.05, 0.05, 0.05, 0.85],  # node 3 (token 1)
        [0.25, 0.25, 0.25, 0.25],
        [0.25, 0.25, 0.25, 0.25],
    ])
    logits = torch.nn.functional.pad(node_probs.log(), (0, 6), value=NEVER)  # vocab 10: tokens 4..9 never
    config = DecodingConfig(temperature=1.0)
    generator = torch.Generator().manual_seed(0)
    draws = 20000
    counts = torch.zeros(4, 5)  # [t1, t2], t2 = 4 when the step ends after t1
    for _ in range(draws):
        tokens = committed(tree, *verify_either(rule, tree, logits, config, generator))
        counts[tokens[0], tokens[1] if len(tokens) > 1 else 4] += 1
    expected = torch.zeros(4, 5)
    node_of = {3: 1, 2: 2, 1: 3}
    for first in range(4):
        if first in node_of:
            expected[first, :4] = node_probs[0, first] * node_probs[node_of[first]]
        else:
            expected[first, 4] = node_probs[0, first]
    statistic, dof = chi_square(counts, expected)
    assert statistic < chi_square_limit(dof)


def _markov_pair(target_logits: torch.Tensor, draft_logits: torch.Tensor):
    return MarkovTarget(target_logits), MarkovDraft(draft_logits)


def _peaked(rows: torch.Tensor, boost: float = 8.0, seed: int = 0) -> torch.Tensor:
    """Random logits with ``rows[t]`` the clear favourite after ``t``."""
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(seed))
    table[torch.arange(V), rows] += boost
    return table


@pytest.mark.parametrize("top_k, depth", [(1, 0), (1, 4), (3, 4), (2, 6)])
def test_perfect_draft_at_temperature_zero(top_k, depth):
    target, draft = _markov_pair(_peaked(NEXT), _peaked(NEXT))
    config = DecodingConfig(top_k=top_k, depth=depth, total_token=40, max_new_tokens=1 + 5 * (depth + 2))
    result = speculative_generate(target, draft, torch.tensor([1, 2]), config)
    assert result.stats.accept_lengths == [depth + 2] * 5
    expected = [2]
    for _ in range(config.max_new_tokens):
        expected.append(int(NEXT[expected[-1]]))
    assert result.tokens.tolist() == expected[1:]


@pytest.mark.parametrize("top_k", [1, 3])
def test_accept_all_when_the_target_is_certain_of_the_proposal(top_k):
    certain = torch.full((V, V), NEVER)
    certain[torch.arange(V), NEXT] = 0.0
    target, draft = _markov_pair(certain, _peaked(NEXT, boost=4.0))
    config = DecodingConfig(top_k=top_k, depth=3, total_token=30, temperature=0.8, max_new_tokens=26)
    result = speculative_generate(target, draft, torch.tensor([5]), config, generator=torch.Generator().manual_seed(1))
    assert result.stats.accept_lengths == [5] * 5  # 4 draft levels, all accepted, + the bonus token


@pytest.mark.parametrize("top_k", [1, 3])
def test_reject_all_when_the_target_never_samples_a_proposal(top_k):
    """The draft's top-3 after ``t`` are NEXT[t] and the two after it; the target gives them
    probability zero, so every step commits only the bonus token, never a proposal."""
    proposals = torch.stack([(NEXT + offset) % V for offset in range(3)], dim=1)  # [V, 3]
    draft_table = torch.zeros(V, V).scatter(1, proposals, torch.tensor([9.0, 8.0, 7.0]).expand(V, 3))
    target_table = torch.randn(V, V, generator=torch.Generator().manual_seed(2)).scatter(
        1, proposals, NEVER
    )
    target, draft = _markov_pair(target_table, draft_table)
    config = DecodingConfig(top_k=top_k, depth=3, total_token=20, temperature=1.0, max_new_tokens=200)
    result = speculative_generate(target, draft, torch.tensor([0]), config, generator=torch.Generator().manual_seed(3))
    assert result.stats.accept_lengths == [1] * 199
    sequence = [0] + result.tokens.tolist()
    assert all(nxt not in proposals[cur].tolist() for cur, nxt in zip(sequence, sequence[1:]))


def test_partial_acceptance_probability_is_min_one_p_over_q():
    """Chain of one: the target gives the proposal p = 0.3 and the draft's own softmax gives
    it 0.6. A top-k proposal is deterministic (q = 1 on it), so it must be accepted with
    min(1, p / q) = p = 0.3 — not 0.5, which the draft's softmax would suggest — and a
    rejection must resample from the residual: the other tokens, uniformly."""
    target_table = torch.full((V, V), 0.1).scatter(1, NEXT[:, None], 0.3).log()
    draft_table = torch.full((V, V), 0.4 / 7).scatter(1, NEXT[:, None], 0.6).log()
    target, draft = _markov_pair(target_table, draft_table)
    config = DecodingConfig(top_k=1, depth=0, temperature=1.0, max_new_tokens=3000)  # a chain of one draft token
    result = speculative_generate(target, draft, torch.tensor([4]), config, generator=torch.Generator().manual_seed(4))
    accepted = torch.tensor(result.stats.accept_lengths) == 2
    steps = accepted.numel()
    assert abs(accepted.float().mean().item() - 0.3) < 4 * math.sqrt(0.21 / steps)
    # Residual: the bonus after a rejection, as an offset from the root token.
    sequence = [4] + result.tokens.tolist()
    position, offsets = 2, []  # sequence[1] came from the prompt forward, not a step
    for length in result.stats.accept_lengths:
        if length == 1:
            offsets.append((sequence[position] - sequence[position - 1]) % V)
        position += length
    counts = torch.bincount(torch.tensor(offsets), minlength=V).float()
    assert counts[3] == 0  # the rejected proposal is never the bonus
    expected = counts.sum() / (V - 1)
    chi_square = (((counts - expected) ** 2) / expected)[torch.arange(V) != 3].sum()
    assert chi_square < 24.3  # χ²(6 dof) at p = 0.0005
