"""Host syncs per decoding step: the decoder reads the device once per step (the committed
length and the last token, in one transfer), drafting and verification not at all.

On CPU a sync cannot be observed directly, so every Python-visible way of reading a tensor's
values on the host is counted while a step runs: ``item``, ``tolist``, ``int()``/``float()``/
``bool()``/index conversions, ``nonzero``, ``cpu``/``numpy``, and indexing with a boolean mask
(a data-dependent shape). The target's forward is the stock HF model's and is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from builders.decoding import prompt, random_draft, single_thread  # noqa: F401
from builders.models import build_tiny_target
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import extend_context, speculative_step, target_step
from eagle3cli.decoding.target import HFTarget
from eagle3cli.decoding.tree import draft_tree
from eagle3cli.decoding.verify import verify

VOCAB = 64
READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "nonzero", "cpu", "numpy")


@contextmanager
def counting_host_reads() -> Iterator[tuple[Counter, list[bool]]]:
    """Count host reads of tensor values while ``active[0]`` is True."""
    counts: Counter = Counter()
    active = [True]
    originals = {name: getattr(torch.Tensor, name) for name in (*READS, "__getitem__")}

    def counted(name):
        original = originals[name]

        def read(self, *args, **kwargs):
            if active[0]:
                counts[name] += 1
            return original(self, *args, **kwargs)

        return read

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if active[0] and any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts):
            counts["boolean mask index"] += 1
        return originals["__getitem__"](self, index)

    try:
        for name in READS:
            setattr(torch.Tensor, name, counted(name))
        torch.Tensor.__getitem__ = getitem
        yield counts, active
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def uncounted(function, active: list[bool]):
    """``function`` with counting paused (the stock target's own forward)."""

    def call(*args, **kwargs):
        active[0] = False
        try:
            return function(*args, **kwargs)
        finally:
            active[0] = True

    return call


@pytest.fixture(params=[0.0, 0.8], ids=["greedy", "sampled"])
def setup(request):
    model = build_tiny_target("qwen3", VOCAB, seed=0)
    draft = random_draft(model, 40, seed=0)
    target = HFTarget(model, draft.config.aux_layer_ids)
    config = DecodingConfig(top_k=4, depth=3, total_token=16, temperature=request.param, max_new_tokens=64)
    state, _ = extend_context(target, draft, prompt(0, 9, VOCAB), config)
    return target, draft, config, state


def test_the_counter_sees_host_reads() -> None:
    with counting_host_reads() as (counts, _):
        values = torch.arange(4)
        int(values[0]), values.tolist(), values[values > 1], bool(values.any())
    assert counts == {"__int__": 1, "tolist": 1, "boolean mask index": 1, "__bool__": 1}


def test_drafting_and_verifying_a_tree_read_nothing_on_the_host(setup) -> None:
    target, draft, config, state = setup
    generator = torch.Generator().manual_seed(0)
    logits = target.forward(state.tokens[None, -1:].expand(1, config.total_token), torch.zeros(1, config.total_token, dtype=torch.long),
                            None, None).logits[0]
    with counting_host_reads() as (counts, _):
        tree = draft_tree(draft, state.draft_cache, state.draft_hidden, state.tokens[-1], config)
        verify(tree, logits[: tree.num_nodes], config, generator)
    assert counts == {}


def test_a_speculative_step_reads_the_device_once(setup) -> None:
    target, draft, config, state = setup
    generator = torch.Generator().manual_seed(0)
    with counting_host_reads() as (counts, active):
        target.forward = uncounted(target.forward, active)
        for _ in range(3):
            counts.clear()
            step = speculative_step(target, draft, state, config, num_generated=1, generator=generator)
            assert counts == {"tolist": 1}, counts
            state = step.state


def test_a_target_only_step_reads_the_device_once(setup) -> None:
    target, _, config, state = setup
    state.draft_cache = state.draft_hidden = None
    with counting_host_reads() as (counts, active):
        target.forward = uncounted(target.forward, active)
        target_step(target, state, config, num_generated=1, generator=torch.Generator().manual_seed(0))
    assert counts == {"tolist": 1}
