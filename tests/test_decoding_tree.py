"""Draft trees: buffers, EAGLE-2 selection, and tree attention in draft and target."""

from __future__ import annotations

import pytest
import torch

from builders.models import FAMILIES, build_tiny_target
from builders.decoding import single_thread, prompt, random_draft
from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.generate import extend_context
from eagle3cli.decoding.state import allocate_draft_cache, draft_forward
from eagle3cli.decoding.target import HFTarget
from eagle3cli.decoding.tree import build_tree, draft_tree, tree_attention_mask

VOCAB = 80


def test_build_tree_buffers():
    #        0
    #      /   \
    #     1     2
    #    / \     \
    #   3   4     5
    #   |
    #   6
    parents = torch.tensor([-1, 0, 0, 1, 1, 2, 3])
    tree = build_tree(torch.arange(7) + 10, parents, torch.zeros(7), max_depth=3)
    assert tree.depths.tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert tree.mask[6].nonzero().squeeze(1).tolist() == [0, 1, 3, 6]
    assert tree.mask[5].nonzero().squeeze(1).tolist() == [0, 2, 5]
    assert tree.mask.sum().item() == 1 + 2 + 2 + 3 + 3 + 3 + 4
    assert sorted(map(tuple, tree.paths.tolist())) == [(0, 1, 3, 6), (0, 1, 4, -1), (0, 2, 5, -1)]
    assert tree.children() == [[1, 2], [3, 4], [5], [6], [], [], []]


def test_tree_attention_mask_shows_prefix_and_ancestors():
    tree = build_tree(torch.arange(3), torch.tensor([-1, 0, 0]), torch.zeros(3), max_depth=1)
    mask = tree_attention_mask(tree.mask, prefix_length=2)
    assert mask.shape == (1, 1, 3, 5)
    assert mask[0, 0].int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 1]]


def _drafted(family: str, config: DecodingConfig, seed: int = 0):
    """A tree drafted after a prompt, with the draft cache and the prompt state."""
    model = build_tiny_target(family, VOCAB, seed=seed)
    draft = random_draft(model, 40, seed=seed)
    target = HFTarget(model, draft.config.aux_layer_ids)
    state, _ = extend_context(target, draft, prompt(seed, 9, VOCAB), config)
    tree = draft_tree(draft, state.draft_cache, state.draft_hidden, state.tokens[-1], config)
    return model, draft, target, state, tree


@pytest.mark.parametrize("top_k, depth, total_token", [(4, 4, 12), (3, 3, 60), (1, 5, 60), (2, 6, 8)])
def test_draft_tree_shape_and_invariants(top_k, depth, total_token):
    config = DecodingConfig(top_k=top_k, depth=depth, total_token=total_token)
    _, draft, _, state, tree = _drafted("llama", config)
    num_candidates = top_k + depth * top_k**2  # the root's top-k, then depth expansions of top_k²
    assert tree.num_nodes == 1 + min(total_token - 1, num_candidates)
    assert tree.tokens[0] == state.tokens[-1]
    assert (tree.parents[1:] < torch.arange(1, tree.num_nodes)).all()  # parents first
    assert tree.depths.max() <= depth + 1
    assert draft.t2d[tree.tokens[1:]].all()  # d2t applied: drafted ids are target ids in the draft vocab
    assert state.draft_cache.length == state.cached_length  # tree entries dropped
    for siblings in tree.children():
        assert len(set(tree.tokens[siblings].tolist())) == len(siblings)
        assert (tree.scores[siblings].diff() <= 0).all()  # most probable sibling first
    assert (tree.scores[1:] <= tree.scores[tree.parents[1:]]).all()
    if top_k == 1:
        assert tree.parents.tolist() == [-1] + list(range(depth + 1))  # depth + 1 draft levels


@torch.no_grad()
def test_tree_scores_equal_each_path_drafted_alone():
    """Draft-side tree attention: each node's cumulative log-prob equals running the draft
    along its root-to-node path on its own, step by step over the prefix cache."""
    config = DecodingConfig(top_k=3, depth=4, total_token=20)
    _, draft, _, state, tree = _drafted("qwen3", config, seed=1)
    prefix = state.draft_cache.length
    target_ids = draft.to_target_ids(torch.arange(draft.d2t.numel())).tolist()
    draft_id = {target_id: index for index, target_id in enumerate(target_ids)}
    for node in range(1, tree.num_nodes):
        path = tree.mask[node].nonzero().squeeze(1)  # ancestors and the node, root first
        cache = allocate_draft_cache(draft, prefix + 8)
        cache.keys[:, :, :prefix] = state.draft_cache.keys[:, :, :prefix]
        cache.values[:, :, :prefix] = state.draft_cache.values[:, :, :prefix]
        cache.length = prefix
        hidden, score = state.draft_hidden, 0.0
        for step, (parent, child) in enumerate(zip(path[:-1], path[1:])):
            if step > 0:
                positions = torch.tensor([[prefix + step - 1]])
                hidden = draft_forward(draft, cache, tree.tokens[parent].reshape(1, 1), hidden, positions)
            log_probs = torch.log_softmax(draft.logits(hidden)[0, -1], dim=-1)
            score += float(log_probs[draft_id[int(tree.tokens[child])]])
        assert score == pytest.approx(float(tree.scores[node]), abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_target_tree_logits_equal_each_path_run_alone(family):
    """Target-side tree attention through the stock HF model: the logits at every node
    equal those of a plain forward over prefix + the node's root-to-node path."""
    config = DecodingConfig(top_k=3, depth=3, total_token=16)
    model, _, target, state, tree = _drafted(family, config, seed=2)
    prefix = state.cached_length
    positions = (prefix + tree.depths)[None]
    out = target.forward(tree.tokens[None], positions, tree_attention_mask(tree.mask, prefix), state.target_cache)
    assert out.cache.get_seq_length() == prefix + tree.num_nodes
    for node in range(tree.num_nodes):
        path = tree.tokens[tree.mask[node]]  # root first (ancestors precede in node order)
        sequence = torch.cat([state.tokens[:-1], path])
        with torch.no_grad():
            alone = model(input_ids=sequence[None], use_cache=False)
        torch.testing.assert_close(out.logits[0, node], alone.logits[0, -1], atol=1e-4, rtol=1e-4)
