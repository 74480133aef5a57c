"""Cache compaction, both transformers cache APIs, and multi-turn continuation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from builders.models import FAMILIES, build_tiny_target
from builders.decoding import (
    OracleDraft,
    echo_target_and_draft,
    naive_greedy,
    prompt,
    random_draft,
    single_thread,  # noqa: F401
)
from eagle3cli.decoding import DecodingConfig, baseline_generate, speculative_generate
from eagle3cli.decoding.state import allocate_draft_cache, draft_extend
from eagle3cli.decoding.target import HFTarget
from eagle3cli.target.kv_cache import cache_keyword
from eagle3cli.errors import Eagle3Error

VOCAB = 96
TREE = dict(top_k=4, depth=5, total_token=24)


def _oracle_setup(family: str, input_ids: torch.Tensor, boost: float = 2.5):
    model = build_tiny_target(family, VOCAB)
    real = random_draft(model, VOCAB)
    real.set_vocab_map(torch.zeros(VOCAB, dtype=torch.long), torch.ones(VOCAB, dtype=torch.bool))
    sequence = torch.cat([input_ids, naive_greedy(model, input_ids, 60)])
    return model, real, OracleDraft(real, sequence, boost), HFTarget(model, real.config.aux_layer_ids)


@torch.no_grad()
def _assert_caches_fresh(model, real_draft, target, state):
    """The state's caches equal one fresh forward of each model over the committed context."""
    context = state.tokens[:-1]  # everything but the pending token
    fresh = model(input_ids=context[None], use_cache=True)
    fresh_cache = getattr(fresh, target.cache_keyword)
    for kept, expected in zip(state.target_cache.layers, fresh_cache.layers):
        torch.testing.assert_close(kept.keys, expected.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kept.values, expected.values, atol=1e-5, rtol=1e-5)
    positions = torch.arange(context.numel())[None]
    aux_hidden = target.forward(context[None], positions, None, None).aux_hidden
    draft_cache = allocate_draft_cache(real_draft, context.numel())
    hidden = draft_extend(real_draft, draft_cache, state.tokens[None, 1:], aux_hidden)
    length = context.numel()
    assert state.draft_cache.length == length
    torch.testing.assert_close(state.draft_cache.keys[:, :, :length], draft_cache.keys, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.draft_cache.values[:, :, :length], draft_cache.values, atol=1e-5, rtol=1e-5)
    hidden_size = real_draft.config.hidden_size
    torch.testing.assert_close(state.draft_hidden[..., :hidden_size], hidden[:, -1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("max_new_tokens", [9, 40])
def test_compacted_caches_equal_a_fresh_forward(family, max_new_tokens):
    input_ids = prompt(10, 9, VOCAB)
    model, real, oracle, target = _oracle_setup(family, input_ids)
    result = speculative_generate(target, oracle, input_ids, DecodingConfig(max_new_tokens=max_new_tokens, **TREE))
    assert max(result.stats.accept_lengths) >= 3  # deep paths were kept
    _assert_caches_fresh(model, real, target, result.state)


def test_compacted_caches_equal_a_fresh_forward_with_a_real_draft():
    model, draft = echo_target_and_draft("hunyuan", VOCAB)
    target = HFTarget(model, draft.config.aux_layer_ids)
    result = speculative_generate(target, draft, prompt(11, 12, VOCAB), DecodingConfig(max_new_tokens=30, **TREE))
    assert max(result.stats.accept_lengths) >= 2
    _assert_caches_fresh(model, draft, target, result.state)


class PastKeyValuesModel(nn.Module):
    """The transformers <= 5.19 calling convention (``past_key_values=`` in and out) over
    whatever the installed model uses, to exercise both branches of the adapter."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.model = inner.model
        self.config = inner.config
        self.inner_keyword = cache_keyword(inner)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, logits_to_keep=0):
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=use_cache, logits_to_keep=logits_to_keep,
                         **{self.inner_keyword: past_key_values})
        return SimpleNamespace(logits=out.logits, past_key_values=getattr(out, self.inner_keyword))


def test_both_cache_calling_conventions():
    model, draft = echo_target_and_draft("qwen3", VOCAB)
    current = HFTarget(model, draft.config.aux_layer_ids)
    legacy = HFTarget(PastKeyValuesModel(model), draft.config.aux_layer_ids)
    assert (current.cache_keyword, legacy.cache_keyword) == (cache_keyword(model), "past_key_values")
    config = DecodingConfig(max_new_tokens=25, **TREE)
    input_ids = prompt(12, 8, VOCAB)
    expected = baseline_generate(current, input_ids, config).tokens
    assert speculative_generate(legacy, draft, input_ids, config).tokens.tolist() == expected.tolist()


class CountingTarget:
    """Records how many tokens each target forward consumes."""

    def __init__(self, inner: HFTarget) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def forward(self, input_ids, *args, **kwargs):
        self.lengths.append(input_ids.shape[1])
        return self.inner.forward(input_ids, *args, **kwargs)

    def keep(self, *args):
        return self.inner.keep(*args)

    def crop(self, *args):
        return self.inner.crop(*args)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_turn_continues_from_state(family):
    """Turn 2 extends turn 1's context: only the new tokens are run, and the output equals
    greedy decoding of the whole context from scratch."""
    model, draft = echo_target_and_draft(family, VOCAB)
    target = CountingTarget(HFTarget(model, draft.config.aux_layer_ids))
    config = DecodingConfig(max_new_tokens=15, **TREE)
    turn_one = prompt(13, 10, VOCAB)
    first = speculative_generate(target, draft, turn_one, config)
    user_two = prompt(14, 6, VOCAB)
    context = torch.cat([turn_one, first.tokens, user_two])
    target.lengths.clear()
    second = speculative_generate(target, draft, context, config, state=first.state)
    assert target.lengths[0] == 1 + user_two.numel()  # the pending token and the new turn
    assert second.tokens.tolist() == baseline_generate(target.inner, context, config).tokens.tolist()
    _assert_caches_fresh(model, draft, target.inner, second.state)


def test_continuation_after_an_edited_history_reuses_the_common_prefix():
    model, draft = echo_target_and_draft("llama", VOCAB)
    target = HFTarget(model, draft.config.aux_layer_ids)
    config = DecodingConfig(max_new_tokens=12, **TREE)
    first = speculative_generate(target, draft, prompt(15, 10, VOCAB), config)
    context = first.state.tokens.clone()
    context[6] = (context[6] + 1) % VOCAB  # a re-rendered history differs from position 6 on
    context = torch.cat([context, prompt(16, 4, VOCAB)])
    second = speculative_generate(target, draft, context, config, state=first.state)
    assert second.tokens.tolist() == baseline_generate(target, context, config).tokens.tolist()
    _assert_caches_fresh(model, draft, target, second.state)


def test_baseline_state_continues_and_feeds_speculative():
    model, draft = echo_target_and_draft("qwen3", VOCAB)
    target = HFTarget(model, draft.config.aux_layer_ids)
    config = DecodingConfig(max_new_tokens=10, **TREE)
    first = baseline_generate(target, prompt(17, 8, VOCAB), config)
    context = torch.cat([first.state.tokens, prompt(18, 3, VOCAB)])
    expected = baseline_generate(target, context, config).tokens.tolist()
    assert baseline_generate(target, context, config, state=first.state).tokens.tolist() == expected
    assert speculative_generate(target, draft, context, config, state=first.state).tokens.tolist() == expected


def test_capture_layer_ids_are_validated():
    model = build_tiny_target("llama", VOCAB)
    with pytest.raises(Eagle3Error, match="outside"):
        HFTarget(model, (1, 2, 4))


def test_keep_gathers_positions_in_every_layer():
    model = build_tiny_target("qwen3", VOCAB)
    target = HFTarget(model, (1, 2, 3))
    out = target.forward(prompt(19, 10, VOCAB)[None], torch.arange(10)[None], None, None)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in out.cache.layers]
    kept = torch.tensor([0, 1, 2, 3, 5, 7, 9])
    cache = target.keep(out.cache, 4, torch.tensor([5, 7, 9]))
    assert cache.get_seq_length() == 7
    for layer, (keys, values) in zip(cache.layers, before):
        torch.testing.assert_close(layer.keys, keys[..., kept, :])
        torch.testing.assert_close(layer.values, values[..., kept, :])


def test_cloned_state_branches_independently():
    model, draft = echo_target_and_draft("llama", VOCAB)
    target = HFTarget(model, draft.config.aux_layer_ids)
    config = DecodingConfig(max_new_tokens=8, **TREE)
    first = speculative_generate(target, draft, prompt(20, 6, VOCAB), config)
    context = torch.cat([first.state.tokens, prompt(21, 3, VOCAB)])
    one = speculative_generate(target, draft, context, config, state=first.state.clone())
    two = speculative_generate(target, draft, context, config, state=first.state.clone())
    assert one.tokens.tolist() == two.tokens.tolist()


def test_a_sliding_window_target_is_refused() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         vocab_size=VOCAB, use_sliding_window=True, sliding_window=8, max_window_layers=2)
    with pytest.raises(Eagle3Error, match="sliding-window attention, whose cache cannot be compacted by position"):
        HFTarget(Qwen2ForCausalLM(config).eval(), (1, 2, 3))


def test_the_preallocated_cache_grows_in_place_and_matches_dynamic_cache() -> None:
    """Every step writes into the same buffers until they are full; tokens equal DynamicCache's."""
    model, draft = echo_target_and_draft("llama", VOCAB)
    config = DecodingConfig(max_new_tokens=30, **TREE)
    input_ids = prompt(22, 200, VOCAB)
    preallocated, dynamic = HFTarget(model, draft.config.aux_layer_ids), HFTarget(model, draft.config.aux_layer_ids, preallocated=False)
    expected = speculative_generate(dynamic, draft, input_ids, config)
    assert type(expected.state.target_cache).__name__ == "DynamicCache"
    generation = speculative_generate(preallocated, draft, input_ids, config)
    assert generation.tokens.tolist() == expected.tokens.tolist()
    layer = generation.state.target_cache.layers[0]
    assert type(layer).__name__ == "PreallocatedLayer" and layer.key_buffer.shape[-2] == 256  # 200 + 30 + a tree fit
    assert layer.keys.data_ptr() == layer.key_buffer.data_ptr() and layer.get_seq_length() == generation.state.cached_length
