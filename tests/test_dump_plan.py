"""Planning pieces of dump-hidden: token-budget batches, the sampled size estimate, the
background prefetch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from builders.dump_data import dump_config, write_chat_records
from eagle3cli.data.records import Conversation
from eagle3cli.dump.plan import RecordSample, bytes_per_token, format_bytes, token_batches
from eagle3cli.dump.prefetch import prefetched
from eagle3cli.dump.runner import DumpPlan, dump_hidden


def test_token_batches_respect_the_budget_and_cover_every_sample_once() -> None:
    lengths = [5, 40, 12, 12, 3, 100, 7]
    batches = token_batches(lengths, 40)
    assert sorted(position for batch in batches for position in batch) == list(range(len(lengths)))
    assert [5] in batches  # longer than the budget: alone
    for batch in batches:
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= 40
    assert token_batches(lengths, 1) == [[5], [1], [2], [3], [6], [0], [4]]


def test_record_sample_keeps_a_seeded_uniform_sample() -> None:
    def sampled(seed: int) -> list[int]:
        sample = RecordSample(10, seed=seed)
        for index in range(1000):
            sample.add((index, Conversation(str(index), ())))
        assert sample.num_seen == 1000
        return sorted(index for index, _ in sample.records)

    assert len(sampled(0)) == 10 and sampled(0) == sampled(0) != sampled(1)
    assert max(sampled(0)) > 100  # not just the first records


def test_the_plan_estimate_is_exact_for_small_data(qwen3_target_dir: Path, tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 5)
    plans: list[DumpPlan] = []
    summary = dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "out"), on_start=plans.append)
    assert plans[0].num_tokens == summary.manifest["num_tokens"]
    assert (plans[0].num_samples, plans[0].num_shards_pending, plans[0].num_shards_resumed) == (5, 2, 0)
    assert plans[0].bytes_per_token == bytes_per_token(64, torch.float32) == 4 * 4 * 64 + 5
    assert plans[0].estimated_bytes >= summary.manifest["num_bytes"]


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (999, 1500, 2_500_000, 3e12)] == ["999 B", "1.5 kB", "2.5 MB", "3.0 TB"]


def test_prefetched_keeps_order_and_runs_ahead() -> None:
    produced: list[int] = []

    def items():
        for index in range(5):
            produced.append(index)
            yield index

    iterator = prefetched(items(), depth=2)
    assert next(iterator) == 0
    time.sleep(0.1)
    assert len(produced) >= 3  # one handed out, up to two waiting
    assert list(iterator) == [1, 2, 3, 4]


def test_prefetched_reraises_the_producers_error() -> None:
    def items():
        yield 1
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        list(prefetched(items()))


def test_leaving_a_prefetched_loop_early_stops_its_thread() -> None:
    def endless():
        index = 0
        while True:
            yield index
            index += 1

    before = threading.active_count()
    for index in prefetched(endless()):
        if index == 3:
            break
    assert threading.active_count() == before
