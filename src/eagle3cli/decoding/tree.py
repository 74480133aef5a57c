"""EAGLE-2 dynamic draft trees: drafting and the buffers verification needs.

Node 0 is the root — the pending token, already chosen by the target. Every other node is a
draft token; node order puts each parent before its children and, among siblings, the
more probable first (sibling order is the order stochastic verification tries them).

Drafting (``depth + 1`` levels, ``top_k`` wide, as EAGLE's ``topK_genrate``):

1. The root's draft distribution gives ``top_k`` level-1 candidates, scored by log-prob.
2. Each of the ``depth`` expansions runs the draft on the current frontier (``top_k``
   nodes, one batch, tree-masked), takes each node's ``top_k`` children scored by
   cumulative log-prob, records all ``top_k²`` as candidates and keeps the global top
   ``top_k`` as the next frontier.
3. The best ``total_token - 1`` candidates form the tree. A child never outscores its
   parent and ties are broken towards the earlier candidate, so the chosen set always
   contains each chosen node's parent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.state import DraftModel, draft_forward, draft_pass
from eagle3cli.draft.attention import DraftKVCache, StaticCachedAttention


@dataclass(frozen=True)
class DraftTree:
    """Tree buffers. ``N`` nodes, at most ``D`` draft levels; built without host syncs.

    ``tokens [N]`` target ids; ``parents [N]`` (-1 for the root); ``scores [N]`` cumulative
    draft log-probs (0 for the root); ``depths [N]`` (0 for the root; the node sits
    ``depth`` positions after the root); ``mask [N, N]`` bool,
    ``mask[i, j]`` iff ``j`` is ``i`` or an ancestor of ``i``; ``node_paths [N, D + 1]`` each
    node's path from the root (node indices by depth, padded with -1).
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    scores: torch.Tensor
    depths: torch.Tensor
    mask: torch.Tensor
    node_paths: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return self.tokens.numel()

    @property
    def paths(self) -> torch.Tensor:
        """``[P, D + 1]``: the root-to-leaf paths (EAGLE's retrieve indices; host sync, for inspection)."""
        return self.node_paths[~self.has_children()]

    def has_children(self) -> torch.Tensor:
        """``[N]`` bool: whether each node is some node's parent (no host sync)."""
        marked = torch.zeros(self.num_nodes, dtype=torch.bool, device=self.tokens.device)
        marked[self.parents[1:]] = True  # only the root (node 0) has no parent
        return marked

    def inner_nodes(self) -> torch.Tensor:
        """``[R]``: the root and every node with a child, ascending — the nodes whose target
        choices decide which draft tokens are accepted (host sync: the count)."""
        inner = self.has_children()
        inner[0] = True
        return inner.nonzero().flatten()

    def children(self) -> list[list[int]]:
        """Each node's children, in node order (host lists, for sequential verification)."""
        children: list[list[int]] = [[] for _ in range(self.num_nodes)]
        for node, parent in enumerate(self.parents.tolist()):
            if parent >= 0:
                children[parent].append(node)
        return children


def build_tree(tokens: torch.Tensor, parents: torch.Tensor, scores: torch.Tensor, max_depth: int) -> DraftTree:
    """Tree buffers from ``tokens/parents/scores [N]`` (parents precede children; no node
    deeper than ``max_depth``)."""
    num_nodes = tokens.numel()
    device = tokens.device
    mask = torch.eye(num_nodes, dtype=torch.bool, device=device)
    depths = torch.zeros(num_nodes, dtype=torch.long, device=device)
    ancestor = parents.clone()
    # 1. Pointer jumping: after ``d`` rounds every ancestor up to ``d`` levels is marked.
    for _ in range(max_depth):
        valid = ancestor >= 0  # [N]
        mask |= F.one_hot(ancestor.clamp(min=0), num_nodes).bool() & valid[:, None]
        depths += valid.long()
        ancestor = torch.where(valid, parents[ancestor.clamp(min=0)], ancestor)
    # 2. Paths: row i of the mask lists i's ancestors; the depth orders them. Entries off the
    #    mask go to a spare column, dropped after the scatter (no data-dependent shapes).
    column = torch.where(mask, depths[None, :], max_depth + 1)  # [N, N]
    nodes = torch.arange(num_nodes, device=device).expand(num_nodes, -1)
    node_paths = torch.full((num_nodes, max_depth + 2), -1, dtype=torch.long, device=device)
    node_paths.scatter_(1, column, nodes)
    return DraftTree(tokens, parents, scores, depths, mask, node_paths[:, : max_depth + 1])


def tree_attention_mask(tree_mask: torch.Tensor, prefix_length: int) -> torch.Tensor:
    """``[N, N]`` tree mask → ``[1, 1, N, prefix_length + N]``: the whole prefix plus ancestors."""
    prefix = torch.ones(tree_mask.shape[0], prefix_length, dtype=torch.bool, device=tree_mask.device)
    return torch.cat([prefix, tree_mask], dim=1)[None, None]


@dataclass
class _Candidates:
    """All scored candidates, flat in creation order (parents before children)."""

    tokens: list[torch.Tensor]
    scores: list[torch.Tensor]
    parents: list[torch.Tensor]
    count: int = 0

    def add(self, tokens: torch.Tensor, scores: torch.Tensor, parents: torch.Tensor) -> int:
        """Append a batch; return the flat index of its first entry."""
        first = self.count
        self.tokens.append(tokens.reshape(-1))
        self.scores.append(scores.reshape(-1))
        self.parents.append(parents.reshape(-1))
        self.count += tokens.numel()
        return first


@dataclass
class _Frontier:
    """The nodes expanded next: ``tokens/scores/indices [k]``, ``hidden [1, k, H]`` (their
    parents' layer outputs), ``mask [k, tree entries so far + k]``, at draft level ``level``."""

    tokens: torch.Tensor
    scores: torch.Tensor
    indices: torch.Tensor
    hidden: torch.Tensor
    mask: torch.Tensor
    level: int


def _draft_log_probs(draft: DraftModel, hidden: torch.Tensor) -> torch.Tensor:
    """Layer outputs ``[1, T, H]`` → draft-vocabulary log-probs ``[T, draft_vocab]`` (fp32)."""
    return torch.log_softmax(draft.logits(hidden)[0].float(), dim=-1)


def draft_level(draft: DraftModel, keys: torch.Tensor, values: torch.Tensor, write: torch.Tensor, tokens: torch.Tensor,
                hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, top_k: int):
    """One draft level over the whole draft cache (:class:`StaticCachedAttention`): layer outputs
    ``[1, k, H]`` and each node's top-k children (log-probs and draft ids ``[k, top_k]``). This
    is what ``compile_draft`` compiles: its shapes are the same at every level."""
    out = draft_pass(draft, tokens, hidden, positions, StaticCachedAttention(keys, values, write, mask))
    scores, ids = _draft_log_probs(draft, out).topk(top_k, dim=-1)
    return out, scores, ids


_COMPILED_LEVELS: dict[str, object] = {}


def compiled_draft_level(device: torch.device):
    """:func:`draft_level` through ``torch.compile`` (one per device type; ``reduce-overhead``,
    CUDA graphs, on CUDA)."""
    if device.type not in _COMPILED_LEVELS:
        _COMPILED_LEVELS[device.type] = torch.compile(draft_level, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else None)
    return _COMPILED_LEVELS[device.type]


def _run_level(draft: DraftModel, cache: DraftKVCache, frontier: _Frontier, mask: torch.Tensor, positions: torch.Tensor,
               top_k: int, compile: bool):
    """The frontier through the draft layer (appended to ``cache``) and each node's top-k children."""
    if not compile:
        out = draft_forward(draft, cache, frontier.tokens[None], frontier.hidden, positions, mask)  # [1, k, H]
        return (out, *_draft_log_probs(draft, out).topk(top_k, dim=-1))
    count = frontier.tokens.numel()
    write = torch.arange(cache.length, cache.length + count, device=positions.device)
    mask = F.pad(mask, (0, cache.capacity - mask.shape[-1]), value=False)
    if positions.device.type == "cuda":
        for buffer in (cache.keys, cache.values):
            torch._dynamo.mark_static_address(buffer)  # written in place by a CUDA graph
        torch.compiler.cudagraph_mark_step_begin()
    out, scores, ids = compiled_draft_level(positions.device)(
        draft, cache.keys, cache.values, write, frontier.tokens[None], frontier.hidden.contiguous(), positions, mask, top_k)
    cache.length += count
    return out.clone(), scores.clone(), ids.clone()  # a CUDA graph's outputs are overwritten by its next replay


def _expand(
    draft: DraftModel,
    cache: DraftKVCache,
    frontier: _Frontier,
    candidates: _Candidates,
    prefix_length: int,
    top_k: int,
    compile: bool = False,
) -> _Frontier:
    """One expansion: run the frontier, score its children, keep the global top-k."""
    mask = tree_attention_mask(frontier.mask, prefix_length)  # [1, 1, k, prefix + tree]
    positions = torch.full_like(frontier.tokens, prefix_length + frontier.level - 1)[None]
    out, child_scores, child_ids = _run_level(draft, cache, frontier, mask, positions, top_k, compile)  # [1, k, H], [k, k] x 2
    cumulative = frontier.scores[:, None] + child_scores  # [k, k]
    child_tokens = draft.to_target_ids(child_ids)
    first = candidates.add(child_tokens, cumulative, frontier.indices[:, None].expand(-1, top_k))
    scores, best = cumulative.reshape(-1).topk(top_k)  # [k]
    rows = best // top_k
    eye = torch.eye(top_k, dtype=torch.bool, device=best.device)
    return _Frontier(
        tokens=child_tokens.reshape(-1)[best],
        scores=scores,
        indices=first + best,
        hidden=out[:, rows],
        mask=torch.cat([frontier.mask[rows], eye], dim=1),
        level=frontier.level + 1,
    )


def _root_frontier(
    draft: DraftModel, root_hidden: torch.Tensor, candidates: _Candidates, top_k: int
) -> _Frontier:
    """Step 1: the root's top-k become the level-1 candidates and the first frontier."""
    log_probs = _draft_log_probs(draft, root_hidden)[-1]  # [draft_vocab]
    if top_k > log_probs.numel():
        raise ValueError(f"top_k {top_k} exceeds the draft vocabulary ({log_probs.numel()} tokens)")
    scores, ids = log_probs.topk(top_k)  # [k]
    tokens = draft.to_target_ids(ids)
    no_parent = torch.full_like(ids, -1)
    first = candidates.add(tokens, scores, no_parent)
    eye = torch.eye(top_k, dtype=torch.bool, device=ids.device)
    indices = first + torch.arange(top_k, device=ids.device)
    hidden = root_hidden[:, -1:].expand(-1, top_k, -1)  # [1, k, H]
    return _Frontier(tokens, scores, indices, hidden, eye, level=1)


def _select(candidates: _Candidates, root_token: torch.Tensor, config: DecodingConfig) -> DraftTree:
    """Step 3: the best ``total_token - 1`` candidates, in creation order, as a tree."""
    scores = torch.cat(candidates.scores)  # [C]
    num_chosen = min(config.total_token - 1, scores.numel())
    ranked = torch.sort(scores, descending=True, stable=True).indices[:num_chosen]
    chosen = ranked.sort().values  # creation order: parents first
    node_of = torch.zeros_like(scores, dtype=torch.long)
    node_of[chosen] = torch.arange(1, num_chosen + 1, device=scores.device)
    flat_parents = torch.cat(candidates.parents)[chosen]
    parents = torch.where(flat_parents >= 0, node_of[flat_parents.clamp(min=0)], 0)
    tokens = torch.cat([root_token.reshape(1), torch.cat(candidates.tokens)[chosen]])
    parents = torch.cat([parents.new_full((1,), -1), parents])
    scores = torch.cat([scores.new_zeros(1), scores[chosen]])
    return build_tree(tokens, parents, scores, config.num_draft_levels)


@torch.no_grad()
def draft_tree(
    draft: DraftModel,
    cache: DraftKVCache,
    root_hidden: torch.Tensor,
    root_token: torch.Tensor,
    config: DecodingConfig,
) -> DraftTree:
    """Draft an EAGLE-2 dynamic tree under ``root_token`` (the pending target token).

    ``root_hidden [1, 1, H]`` is the draft layer's output at the last cached position (it
    predicts the token after ``root_token``). The cache gets the tree's entries during
    drafting and is truncated back to its prefix before returning.
    """
    prefix_length = cache.length
    candidates = _Candidates([], [], [])
    frontier = _root_frontier(draft, root_hidden, candidates, config.top_k)
    for _ in range(config.depth):
        frontier = _expand(draft, cache, frontier, candidates, prefix_length, config.top_k, config.compile_draft)
    cache.truncate(prefix_length)
    return _select(candidates, root_token, config)


def tree_cache_capacity(config: DecodingConfig) -> int:
    """Draft cache positions one tree needs beyond the prefix."""
    return config.depth * config.top_k
