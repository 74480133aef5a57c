"""The d2t/t2d vocabulary map: built from token counts, padded when short, saved and loaded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from eagle3cli.draft.vocab import (
    VocabMap,
    build_vocab_map,
    load_vocab_map,
    save_vocab_map,
    vocab_map_problems,
)
from eagle3cli.errors import Eagle3Error


def assert_is_map_of(vocab_map: VocabMap, target_ids: list[int], vocab_size: int) -> None:
    """Every draft id i maps to target_ids[i]; t2d marks exactly those ids."""
    draft_ids = torch.arange(len(target_ids))
    assert (draft_ids + vocab_map.d2t).tolist() == target_ids
    assert vocab_map.d2t.dtype == torch.int64 and vocab_map.t2d.dtype == torch.bool
    assert vocab_map.t2d.shape == (vocab_size,)
    assert int(vocab_map.t2d.sum()) == len(target_ids)
    assert torch.nonzero(vocab_map.t2d).flatten().tolist() == target_ids


def test_top_tokens_sorted_ascending_ties_to_lower_id() -> None:
    counts = torch.tensor([5, 0, 9, 7, 7, 1, 7, 0, 3, 2], dtype=torch.int64)
    vocab_map = build_vocab_map(counts, 3)
    # 9 (id 2), then the three 7s (ids 3, 4, 6) tie for the last two places: ids 3 and 4 win.
    assert_is_map_of(vocab_map, [2, 3, 4], 10)
    assert vocab_map.draft_vocab_size == 3 and vocab_map.vocab_size == 10
    assert_is_map_of(build_vocab_map(counts, 5), [0, 2, 3, 4, 6], 10)


def test_full_draft_vocab_is_the_identity() -> None:
    vocab_map = build_vocab_map(torch.randint(0, 5, (50,)), 50)
    assert_is_map_of(vocab_map, list(range(50)), 50)
    assert not vocab_map.d2t.any()


def test_too_few_tokens_are_padded_with_lowest_unused_ids(caplog) -> None:
    counts = torch.zeros(20, dtype=torch.int64)
    counts[[3, 11, 17]] = torch.tensor([4, 9, 1])
    with caplog.at_level(logging.WARNING):
        vocab_map = build_vocab_map(counts, 6)
    assert_is_map_of(vocab_map, [0, 1, 2, 3, 11, 17], 20)
    assert "only 3 distinct tokens" in caplog.text and "padding with the 3 lowest unused ids" in caplog.text


@pytest.mark.parametrize(
    ("counts", "size", "message"),
    [
        (torch.ones(10), 4, "1-D integer tensor"),
        (torch.ones(2, 5, dtype=torch.int64), 4, "1-D integer tensor"),
        (torch.ones(10, dtype=torch.int64), 11, r"draft_vocab_size 11 must be in 1\.\.10"),
        (torch.tensor([1, -1, 2]), 2, "must not be negative"),
    ],
)
def test_bad_counts_are_refused(counts: torch.Tensor, size: int, message: str) -> None:
    with pytest.raises(Eagle3Error, match=message):
        build_vocab_map(counts, size)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    vocab_map = build_vocab_map(torch.randint(0, 100, (300,)), 64)
    path = tmp_path / "vocab_map.safetensors"
    save_vocab_map(path, vocab_map)
    loaded = load_vocab_map(path, vocab_size=300, draft_vocab_size=64)
    assert torch.equal(loaded.d2t, vocab_map.d2t) and torch.equal(loaded.t2d, vocab_map.t2d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab_map.safetensors"]  # no temp file left
    with pytest.raises(Eagle3Error, match=r"d2t must be int64 \[32\], got int64 \[64\]"):
        load_vocab_map(path, draft_vocab_size=32)


def test_broken_maps_are_described() -> None:
    good = build_vocab_map(torch.arange(10), 4)  # target ids 6..9
    assert vocab_map_problems(good.d2t, good.t2d, vocab_size=10, draft_vocab_size=4) == []
    out_of_range = good.d2t + 1
    assert vocab_map_problems(out_of_range, good.t2d, vocab_size=10, draft_vocab_size=4) == [
        "d2t maps draft ids outside the target vocabulary [0, 10)"
    ]
    zeros = torch.zeros(4, dtype=torch.int64)
    assert vocab_map_problems(zeros, good.t2d, vocab_size=10, draft_vocab_size=4) == [
        "t2d does not mark every target id that d2t maps to"
    ]
    assert vocab_map_problems(good.d2t, torch.ones(10, dtype=torch.bool), vocab_size=10, draft_vocab_size=4) == [
        "t2d marks 10 target ids, expected draft_vocab_size 4"
    ]
    repeated = torch.tensor([6, 5, 4, 3])  # every draft id → target id 6
    assert vocab_map_problems(repeated, good.t2d, vocab_size=10, draft_vocab_size=4) == [
        "d2t target ids are not strictly increasing (a target token is mapped twice)"
    ]
