"""The dump folder: shard format, manifest, vocab map, reader API, resume after damage,
refusals (other settings, corrupted shards, small disk), and no pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from builders.dump_data import dump_config, write_chat_records
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.draft.config_json import read_draft_config
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.dump import open_dump
from eagle3cli.dump import plan as dump_plan
from eagle3cli.dump.manifest import record_file, shard_file
from eagle3cli.dump.runner import dump_hidden
from eagle3cli.errors import Eagle3Error

NUM_RECORDS = 7  # shards of 3: [0, 3), [3, 6), [6, 7)


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_records(tmp_path_factory.mktemp("data") / "chats.jsonl", NUM_RECORDS)


@pytest.fixture
def dumped(qwen3_target_dir: Path, chats: Path, tmp_path: Path) -> tuple[DumpHiddenConfig, Path]:
    """A finished float32 dump of ``chats`` (3 shards) and its config."""
    config = dump_config(chats, qwen3_target_dir, tmp_path / "out")
    dump_hidden(config)
    return config, tmp_path / "out"


def test_manifest_names_target_layers_settings_and_every_shard(qwen3_target_dir: Path, dumped) -> None:
    config, out = dumped
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["target"]["path"] == str(qwen3_target_dir.resolve())
    assert manifest["target"]["config_sha256"] == hashlib.sha256((qwen3_target_dir / "config.json").read_bytes()).hexdigest()
    assert manifest["aux_layer_ids"] == [1, 2, 3] and manifest["sglang_layer_ids"] == [0, 1, 2]
    assert (manifest["dtype"], manifest["max_length"], manifest["chat_template"]) == ("float32", 2048, "qwen3")
    assert [(s["first_sample"], s["num_samples"]) for s in manifest["shards"]] == [(0, 3), (3, 3), (6, 1)]
    assert manifest["num_samples"] == NUM_RECORDS
    for shard in manifest["shards"]:
        path = out / shard["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        assert path.stat().st_size == shard["num_bytes"]
        assert json.loads(record_file(out, shard["index"]).read_text()) == shard
    assert manifest["num_tokens"] == sum(s["num_tokens"] for s in manifest["shards"])
    assert read_draft_config(out / "draft_config.json").aux_layer_ids == (1, 2, 3)
    assert DumpHiddenConfig.model_validate_json((out / "config.json").read_text()) == config
    rerun = dump_hidden(DumpHiddenConfig.model_validate_json((out / "config.json").read_text()))
    assert (rerun.num_shards_resumed, rerun.num_shards_written) == (3, 0)


def test_shard_is_plain_safetensors_with_the_documented_tensors(qwen3_target_dir: Path, chats: Path, tmp_path: Path) -> None:
    dump_hidden(dump_config(chats, qwen3_target_dir, tmp_path / "out", dtype="bfloat16"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    with safe_open(shard_file(tmp_path / "out", 0), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = handle.metadata()
    num_tokens = manifest["shards"][0]["num_tokens"]
    assert tensors["input_ids"].dtype == torch.int32 and tensors["input_ids"].shape == (num_tokens,)
    assert tensors["loss_mask"].dtype == torch.uint8
    assert tensors["aux_hidden"].dtype == torch.bfloat16 and tensors["aux_hidden"].shape == (num_tokens, 3 * 64)
    assert tensors["last_hidden"].shape == (num_tokens, 64)
    assert tensors["sample_offsets"].tolist()[-1] == num_tokens
    assert json.loads(metadata["sample_ids"]) == ["rec-0", "rec-1", "rec-2"]
    # bf16: 2 * (3H + H) bytes per token, plus int32 ids and a uint8 mask, plus a small index.
    overhead = manifest["num_bytes"] - manifest["num_tokens"] * (2 * 4 * 64 + 5)
    assert 0 < overhead < 2000 * manifest["num_shards"]


def test_vocab_map_comes_from_the_loss_masked_tokens_of_all_shards(dumped) -> None:
    _, out = dumped
    dump = open_dump(out)
    counts = torch.zeros(dump.manifest["target"]["vocab_size"], dtype=torch.int64)
    for sample in dump.iter_samples():
        counts.index_add_(0, sample.input_ids[sample.loss_mask.bool()].long(), torch.ones(int(sample.loss_mask.sum()), dtype=torch.int64))
    expected = build_vocab_map(counts, 64)
    assert torch.equal(dump.vocab_map().d2t, expected.d2t) and torch.equal(dump.vocab_map().t2d, expected.t2d)


def test_reader_random_access_equals_iteration(dumped) -> None:
    _, out = dumped
    dump = open_dump(out, verify_checksums=True)
    assert len(dump) == NUM_RECORDS and dump.num_shards == 3 and dump.hidden_size == 64
    samples = list(dump)
    assert [sample.sample_index for sample in samples] == list(range(NUM_RECORDS))
    assert [sample.sample_id for sample in dump.iter_samples(shard_indices=[2, 0])] == ["rec-6", "rec-0", "rec-1", "rec-2"]
    for position in (0, 4, 6):
        sample = dump.read_sample(position)
        assert sample.sample_id == samples[position].sample_id
        assert torch.equal(sample.aux_hidden, samples[position].aux_hidden)
        assert torch.equal(sample.loss_mask, samples[position].loss_mask)
    with pytest.raises(IndexError):
        dump.read_sample(NUM_RECORDS)


def flip_byte(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_shard_is_detected_on_read_and_recomputed_on_resume(dumped) -> None:
    config, out = dumped
    before = [sample.aux_hidden.clone() for sample in open_dump(out)]
    flip_byte(shard_file(out, 1), 100)
    with pytest.raises(Eagle3Error, match="fails its sha256 checksum"):
        open_dump(out, verify_checksums=True)
    with pytest.raises(Eagle3Error, match="fails its sha256 checksum"):
        list(open_dump(out).iter_samples())

    summary = dump_hidden(config)
    assert (summary.num_shards_resumed, summary.num_shards_written) == (2, 1)
    after = [sample.aux_hidden for sample in open_dump(out, verify_checksums=True)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_half_written_shards_are_never_taken_as_complete(dumped) -> None:
    config, out = dumped
    shard = shard_file(out, 2)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated, record still there
    record_file(out, 0).unlink()  # killed between the rename and the record
    stale = out / "shards" / ".shard-000001.safetensors.abc123.tmp"  # killed while streaming
    stale.write_bytes(b"partial")
    with pytest.raises(Eagle3Error, match="truncated or changed"):
        open_dump(out)

    summary = dump_hidden(config)
    assert (summary.num_shards_resumed, summary.num_shards_written) == (1, 2)
    assert not stale.exists()
    assert len(open_dump(out, verify_checksums=True)) == NUM_RECORDS


def test_an_interrupted_dump_cannot_be_read(dumped) -> None:
    _, out = dumped
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(Eagle3Error, match="not complete"):
        open_dump(out)


def test_other_settings_against_an_existing_dump_are_refused_unless_overwrite(
    dumped, llama_target_dir: Path, chats: Path
) -> None:
    config, out = dumped
    with pytest.raises(Eagle3Error, match=r"max_length: 2048 -> 64") as error:
        dump_hidden(config.model_copy(update={"max_length": 64}))
    assert "--overwrite" in str(error.value)
    with pytest.raises(Eagle3Error, match="target.path"):
        dump_hidden(dump_config(chats, llama_target_dir, out))
    with pytest.raises(Eagle3Error, match="enable_thinking: false -> true"):
        dump_hidden(config.model_copy(update={"enable_thinking": True}))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "aux_layer_ids": [1, 2, 4]}))  # dumped with other layers
    with pytest.raises(Eagle3Error, match=r"aux_layer_ids: \[1, 2, 4\] -> \[1, 2, 3\]"):
        dump_hidden(config)

    summary = dump_hidden(config.model_copy(update={"max_length": 64, "overwrite": True}))
    assert summary.num_shards_written == 3
    assert open_dump(out).manifest["max_length"] == 64


def test_samples_without_a_loss_token_are_left_out_and_counted(qwen3_target_dir: Path, chats: Path, tmp_path: Path) -> None:
    summary = dump_hidden(dump_config(chats, qwen3_target_dir, tmp_path / "out", max_length=6))
    assert summary.manifest["num_skipped_without_loss"] == NUM_RECORDS
    assert summary.manifest["num_samples"] == 0 and len(open_dump(tmp_path / "out")) == 0


def test_too_little_disk_is_refused_before_loading_the_model(
    qwen3_target_dir: Path, chats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dump_plan.shutil, "disk_usage", lambda path: usage(10_000, 9_000, 1_000))
    config = dump_config(chats, qwen3_target_dir, tmp_path / "out")
    with pytest.raises(Eagle3Error, match=r"needs about .* but .* has 1.0 kB free.*--force"):
        dump_hidden(config)
    assert not list((tmp_path / "out" / "shards").glob("*.safetensors"))
    assert dump_hidden(config.model_copy(update={"force": True})).num_shards_written == 3


def test_no_pickle_is_loaded_when_dumping_or_reading(
    qwen3_target_dir: Path, chats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle or torch.load used on dump data")

    dump_hidden(dump_config(chats, qwen3_target_dir, tmp_path / "out"))  # the target itself loads first
    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    shutil.rmtree(tmp_path / "out" / "shards")
    dump_hidden(dump_config(chats, qwen3_target_dir, tmp_path / "out", overwrite=True))
    dump = open_dump(tmp_path / "out", verify_checksums=True)
    assert len(list(dump)) == NUM_RECORDS and dump.read_sample(1).sample_id == "rec-1"
    dump.vocab_map()
    sources = [Path(__file__).parents[1] / "src/eagle3cli/target/capture.py", *(Path(__file__).parents[1] / "src/eagle3cli/dump").glob("*.py")]
    calls = ("torch.load(", "import pickle", "pickle.load")
    assert not [path for path in sources if any(call in path.read_text() for call in calls)]
