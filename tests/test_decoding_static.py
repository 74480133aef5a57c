"""The static-cache target (`bench --compile`): the same tokens as the preallocated cache,
eager and compiled, across turns, cache growth and compaction; one conversation at a time."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from builders.decoding import OracleDraft, echo_target_and_draft, naive_greedy, prompt, random_draft, single_thread  # noqa: F401
from builders.models import FAMILIES, build_tiny_target
from eagle3cli.decoding import DecodingConfig, baseline_generate, speculative_generate
from eagle3cli.decoding.target import HFTarget, StaticTarget
from eagle3cli.errors import Eagle3Error

VOCAB = 96
TREE = dict(top_k=4, depth=5, total_token=24)


def _two_turns(target, draft, first: torch.Tensor, second: torch.Tensor, config: DecodingConfig) -> list[list[int]]:
    """Two turns of one conversation, the second continuing from the first's state."""
    run = speculative_generate if draft is not None else (lambda t, _d, ids, c, state=None: baseline_generate(t, ids, c, state=state))
    one = run(target, draft, first, config)
    context = torch.cat([first, one.tokens, second])
    two = run(target, draft, context, config, state=one.state)
    return [one.tokens.tolist(), two.tokens.tolist(), one.stats.accept_lengths + two.stats.accept_lengths]


@pytest.mark.parametrize("family", FAMILIES)
def test_static_cache_decodes_the_preallocated_caches_tokens_through_growth_and_compaction(family):
    model = build_tiny_target(family, VOCAB)
    real = random_draft(model, VOCAB)
    real.set_vocab_map(torch.zeros(VOCAB, dtype=torch.long), torch.ones(VOCAB, dtype=torch.bool))
    first, second = prompt(3, 20, VOCAB), prompt(4, 7, VOCAB)
    oracle = OracleDraft(real, torch.cat([first, naive_greedy(model, first, 50)]), 2.5)
    config = DecodingConfig(max_new_tokens=40, **TREE)
    static = StaticTarget(model, real.config.aux_layer_ids, min_capacity=32)
    for draft in (oracle, None):
        expected = _two_turns(HFTarget(model, real.config.aux_layer_ids), draft, first, second, config)
        assert _two_turns(static, draft, first, second, config) == expected
        # 20 + 40 + 7 + 40 tokens, the last tree's 25 nodes after them: 32 -> 64 -> 128 -> 256
        assert static.capacity == 256 and static.length == first.numel() + second.numel() + 80 - 1
        if draft is oracle:
            assert max(expected[2]) >= 3  # deep paths were compacted into place
    # a state taken before the cache grew still holds the target's cache
    config = DecodingConfig(max_new_tokens=20)
    first_turn = baseline_generate(static, prompt(5, 25, VOCAB), config)  # 44 positions in a 256 one
    cache = first_turn.state.target_cache
    assert static._room(300) is cache and static.capacity == 512 and static.length == 44
    context = torch.cat([first_turn.state.tokens, prompt(6, 4, VOCAB)])
    assert baseline_generate(static, context, config, state=first_turn.state).tokens.tolist() == \
        baseline_generate(HFTarget(model, real.config.aux_layer_ids), context, config).tokens.tolist()


def test_compiled_static_target_decodes_the_eager_tokens():
    model, draft = echo_target_and_draft("llama", VOCAB)
    config = DecodingConfig(max_new_tokens=24, **TREE)
    first, second = prompt(11, 12, VOCAB), prompt(12, 5, VOCAB)
    expected = _two_turns(HFTarget(model, draft.config.aux_layer_ids), draft, first, second, config)
    compiled = StaticTarget(model, draft.config.aux_layer_ids, compile=True, min_capacity=64)
    graphs = counters["stats"]["unique_graphs"]
    assert _two_turns(compiled, draft, first, second, config) == expected
    assert _two_turns(compiled, None, first, second, config) == _two_turns(HFTarget(model, draft.config.aux_layer_ids), None, first, second, config)
    # one graph per forward kind (tree, one token) and capacity (64, then 128): none per step
    assert compiled.capacity == 128 and counters["stats"]["unique_graphs"] - graphs <= 4


def test_a_static_target_holds_one_conversation_at_a_time():
    model = build_tiny_target("llama", VOCAB)
    target = StaticTarget(model, (1, 2, 3))
    config = DecodingConfig(max_new_tokens=4)
    older = baseline_generate(target, prompt(1, 6, VOCAB), config)
    newer = baseline_generate(target, prompt(2, 6, VOCAB), config)
    assert newer.state.target_cache is older.state.target_cache  # reused from position 0, not reallocated
    assert target.length == 6 + 4 - 1
    copied = newer.state.clone()
    with pytest.raises(Eagle3Error, match="holds one conversation at a time"):
        baseline_generate(target, torch.cat([copied.tokens, prompt(3, 2, VOCAB)]), config, state=copied)
    assert target.length == 6 + 4 - 1  # the held conversation is untouched
    more = baseline_generate(target, torch.cat([newer.state.tokens, prompt(3, 2, VOCAB)]), config, state=newer.state)
    assert more.tokens.tolist() == baseline_generate(HFTarget(model, (1, 2, 3)), torch.cat([newer.state.tokens, prompt(3, 2, VOCAB)]), config).tokens.tolist()


def test_compiled_draft_levels_draft_the_eager_trees():
    """``compile_draft``: every level through one compiled graph over the whole draft cache —
    the same trees (accept lengths) and tokens as eager drafting, one graph per cache size."""
    model, draft = echo_target_and_draft("qwen3", VOCAB)
    target = HFTarget(model, draft.config.aux_layer_ids)
    first, second = prompt(21, 12, VOCAB), prompt(22, 5, VOCAB)
    eager = _two_turns(target, draft, first, second, DecodingConfig(max_new_tokens=30, **TREE))
    graphs = counters["stats"]["unique_graphs"]
    compiled = _two_turns(target, draft, first, second, DecodingConfig(max_new_tokens=30, compile_draft=True, **TREE))
    assert compiled == eager and max(eager[2]) >= 2
    assert counters["stats"]["unique_graphs"] - graphs <= 2  # level 1's frontier and the others, one cache size
