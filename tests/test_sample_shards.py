"""Shards by input index range: input order, atomic finish, sidecars, exact resume after a kill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eagle3cli.data.readers import read_conversations
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.shards import ShardStore


def record(index: int) -> dict[str, Any]:
    return {
        "id": f"r{index}",
        "conversations": [
            {"role": "user", "content": f"question {index}"},
            {"role": "assistant", "content": f"answer {index}", "finish_reason": "stop"},
        ],
        "sampling_params": {"temperature": 0.0},
    }


def complete(store: ShardStore, indices: list[int]) -> None:
    """Begin all of ``indices`` (as a run dispatches them), then finish them in the given order."""
    for index in sorted(indices):
        store.begin(index)
    for index in indices:
        store.add(index, f"r{index}", record(index))


def shard_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_records_finished_out_of_order_are_written_in_input_order(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=4)
    complete(store, [3, 0, 6, 2, 1, 5, 4])
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "shard-000000000-000000003.jsonl.partial",
        "shard-000000004-000000007.jsonl.partial",
    ]
    store.close_before(4)  # the input moved past shard 0
    store.close_all()
    assert shard_ids(tmp_path / "shard-000000000-000000003.jsonl") == ["r0", "r1", "r2", "r3"]
    assert shard_ids(tmp_path / "shard-000000004-000000007.jsonl") == ["r4", "r5", "r6"]
    sidecar = json.loads((tmp_path / "shard-000000004-000000007.jsonl.done").read_text())
    assert sidecar == {"completed": [{"input_index": i, "id": f"r{i}"} for i in (4, 5, 6)], "dropped": []}
    assert not list(tmp_path.glob("*.partial"))


def test_a_shard_waits_for_its_records_in_flight(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=4)
    for index in range(4):
        store.begin(index)
    for index in (0, 1, 3):
        store.add(index, f"r{index}", record(index))
    store.close_before(4)
    assert not (tmp_path / "shard-000000000-000000003.jsonl").exists()
    store.add(2, "r2", record(2))
    assert shard_ids(tmp_path / "shard-000000000-000000003.jsonl") == ["r0", "r1", "r2", "r3"]


def test_readers_see_only_finished_records_in_the_shards_folder(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=2)
    complete(store, [0, 1, 2])
    store.close_before(2)
    conversations = [conversation for _, conversation in read_conversations(str(tmp_path))]
    assert [conversation.id for conversation in conversations] == ["r0", "r1"]
    assert conversations[1].turns[1].extra == {"finish_reason": "stop"}


def test_a_rerun_knows_exactly_what_is_done(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=3)
    complete(store, [0, 1, 2, 4])
    store.close_before(3)
    store.release()  # the run stopped with shard 1 half done
    rerun = ShardStore(tmp_path, shard_size=3)
    assert [index for index in range(6) if rerun.is_done(index, f"r{index}")] == [0, 1, 2, 4]
    complete(rerun, [5, 3])
    rerun.close_all()
    assert shard_ids(tmp_path / "shard-000000003-000000005.jsonl") == ["r3", "r4", "r5"]


def test_a_changed_input_is_refused(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=3)
    complete(store, [0])
    with pytest.raises(Eagle3Error, match="input record 0 has id 'other', but 'r0' was sampled there"):
        ShardStore(tmp_path, shard_size=3).is_done(0, "other")


def test_a_journal_line_torn_by_a_kill_is_cut_off(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=10)
    complete(store, [0, 1])
    store.release()
    journal = tmp_path / "shard-000000000-000000009.jsonl.partial"
    journal.write_bytes(journal.read_bytes() + b'{"input_index": 2, "id": "r2", "rec')
    rerun = ShardStore(tmp_path, shard_size=10)
    assert [rerun.is_done(index, f"r{index}") for index in range(3)] == [True, True, False]
    complete(rerun, [2])
    rerun.close_all()
    assert shard_ids(tmp_path / "shard-000000000-000000009.jsonl") == ["r0", "r1", "r2"]


def test_a_record_that_failed_before_reopens_its_finished_shard(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=4)
    for index in range(4):
        store.begin(index)
    for index in (0, 1, 3):
        store.add(index, f"r{index}", record(index))
    store.end(2)  # failed: not done
    store.close_all()
    shard = tmp_path / "shard-000000000-000000003.jsonl"
    assert shard_ids(shard) == ["r0", "r1", "r3"]
    rerun = ShardStore(tmp_path, shard_size=4)
    assert not rerun.is_done(2, "r2")
    complete(rerun, [2])
    rerun.close_all()
    assert shard_ids(shard) == ["r0", "r1", "r2", "r3"]
    assert [entry["input_index"] for entry in json.loads((tmp_path / (shard.name + ".done")).read_text())["completed"]] == [0, 1, 2, 3]
    assert not list(tmp_path.glob("*.partial"))


def test_dropped_records_are_done_but_not_written(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, shard_size=4)
    for index in range(2):
        store.begin(index)
    store.add(0, "r0", record(0))
    store.add(1, "r1", None, dropped="truncated")
    store.close_all()
    assert shard_ids(tmp_path / "shard-000000000-000000003.jsonl") == ["r0"]
    sidecar = json.loads((tmp_path / "shard-000000000-000000003.jsonl.done").read_text())
    assert sidecar["dropped"] == [{"input_index": 1, "id": "r1", "reason": "truncated"}]
    assert ShardStore(tmp_path, shard_size=4).is_done(1, "r1")


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".shard-000000000-000000003.jsonl.abc.tmp").write_text("half a shard")
    ShardStore(tmp_path, shard_size=4)
    assert list(tmp_path.iterdir()) == []
