"""Reading a hidden-state dump (what offline training consumes).

::

    dump = open_dump("dumps/qwen3-8b")              # checks the manifest and every shard's size
    for sample in dump.iter_samples():              # shard by shard, each checked against its sha256
        sample.input_ids, sample.loss_mask, sample.aux_hidden, sample.last_hidden
    for sample in dump.iter_samples(shard_indices=range(rank, dump.num_shards, world_size)): ...
    sample = dump.read_sample(1234)                 # random access (memory-mapped, no checksum)
    vocab_map = dump.vocab_map()                    # d2t / t2d, checked against the target sizes
    growing = open_growing_dump("dumps/running")    # while dump-hidden runs: the shards finished so far

Tensors come back as stored: ``input_ids [T] int32``, ``loss_mask [T] uint8``,
``aux_hidden [T, 3H]`` and ``last_hidden [T, H]`` in the dump dtype (float8 dumps add their
scales, see :func:`eagle3cli.dump.shard_file.dequantize`). Nothing is unpickled.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.vocab import VOCAB_MAP_FILE, VocabMap
from eagle3cli.dump.manifest import DRAFT_CONFIG_FILE, MANIFEST_FILE, RECORD_SUFFIX, SHARDS_DIR, ShardRecord, read_manifest, read_record
from eagle3cli.dump.shard_file import (
    DUMP_DTYPES,
    FORMAT_VERSION,
    FP8,
    HiddenSample,
    read_shard_file,
    sha256_file,
    shard_problems,
    split_samples,
)
from eagle3cli.errors import Eagle3Error


@dataclass(frozen=True)
class HiddenStateDump:
    """A complete dump folder; get one with :func:`open_dump`."""

    directory: Path
    manifest: dict[str, Any]
    shards: tuple[ShardRecord, ...]

    @property
    def hidden_size(self) -> int:
        return int(self.manifest["target"]["hidden_size"])

    @property
    def aux_layer_ids(self) -> tuple[int, ...]:
        """Capture layers, vLLM numbering (``aux_hidden`` holds them low → high)."""
        return tuple(self.manifest["aux_layer_ids"])

    @property
    def dtype(self) -> torch.dtype:
        return DUMP_DTYPES[self.manifest["dtype"]]

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def complete(self) -> bool:
        """False for a dump still being written (:func:`open_growing_dump`): ``shards`` are
        those finished so far, in index order, with gaps where a shard is still to come."""
        return self.manifest.get("complete") is True

    @property
    def planned_num_samples(self) -> int:
        """The samples the finished dump will hold: exact once complete; while it runs, the
        finished shards' samples plus the input records of the others (some may yet be
        skipped)."""
        if self.complete:
            return int(self.manifest["num_samples"])
        planned = self.manifest["planned"]
        pending = int(planned["num_records"]) - sum(record.num_samples + record.num_skipped_without_loss for record in self.shards)
        return self.num_samples + max(pending, 0)

    @property
    def num_samples(self) -> int:
        return sum(record.num_samples for record in self.shards)

    @property
    def num_tokens(self) -> int:
        return sum(record.num_tokens for record in self.shards)

    def __len__(self) -> int:
        return self.num_samples

    def read_shard(self, shard_index: int, *, verify_checksum: bool = True) -> list[HiddenSample]:
        """The samples of shard ``shard_index``, read whole (and checked against its sha256)."""
        record = self.shards[shard_index]
        path = self.directory / record.file
        tensors, metadata = read_shard_file(path, sha256=record.sha256 if verify_checksum else None)
        problems = shard_problems(tensors, metadata, hidden_size=self.hidden_size)
        if not problems and (tensors["sample_indices"].numel(), tensors["input_ids"].numel()) != (
            record.num_samples, record.num_tokens,
        ):
            num_samples, num_tokens = tensors["sample_indices"].numel(), tensors["input_ids"].numel()
            problems.append(f"it holds {num_samples} samples / {num_tokens} tokens")
        if not problems and tensors["aux_hidden"].dtype != self.dtype:
            problems.append(f"its hidden states are {tensors['aux_hidden'].dtype}, the manifest says {self.dtype}")
        if problems:
            raise Eagle3Error(f"shard {path} does not match {MANIFEST_FILE}: " + "; ".join(problems))
        return split_samples(tensors, metadata)

    def iter_samples(
        self, *, shard_indices: Iterable[int] | None = None, verify_checksums: bool = True
    ) -> Iterator[HiddenSample]:
        """Every sample of the given shards (default: all), shard by shard, in data order."""
        indices = range(self.num_shards) if shard_indices is None else shard_indices
        for shard_index in indices:
            yield from self.read_shard(shard_index, verify_checksum=verify_checksums)

    def __iter__(self) -> Iterator[HiddenSample]:
        return self.iter_samples()

    def read_sample(self, position: int) -> HiddenSample:
        """Sample ``position`` (``0 <= position < len(self)``) without reading its whole shard."""
        from safetensors import safe_open

        if not 0 <= position < self.num_samples:
            raise IndexError(f"sample position {position} is outside 0..{self.num_samples - 1}")
        ends = list(itertools.accumulate(record.num_samples for record in self.shards))
        shard_index = bisect.bisect_right(ends, position)
        row = position - (ends[shard_index] - self.shards[shard_index].num_samples)
        with safe_open(self.directory / self.shards[shard_index].file, framework="pt") as handle:
            start, end = handle.get_slice("sample_offsets")[row : row + 2].tolist()
            sample_index = int(handle.get_slice("sample_indices")[row : row + 1][0])
            sample_id = json.loads(handle.metadata()["sample_ids"])[row]
            return HiddenSample.rows(handle.get_slice, sample_index, sample_id, start, end, scaled=self.dtype == FP8)

    def vocab_map(self) -> VocabMap:
        """The dump's d2t / t2d map, checked against the target and draft vocabulary sizes."""
        from eagle3cli.draft.vocab import load_vocab_map

        return load_vocab_map(
            self.directory / VOCAB_MAP_FILE,
            vocab_size=int(self.manifest["target"]["vocab_size"]),
            draft_vocab_size=int(self.manifest["draft_vocab_size"]),
        )

    def draft_config(self) -> DraftConfig:
        """The draft config whose capture layers were dumped."""
        from eagle3cli.draft.config_json import read_draft_config

        return read_draft_config(self.directory / DRAFT_CONFIG_FILE)


def open_dump(directory: str | Path, *, verify_checksums: bool = False) -> HiddenStateDump:
    """Open a complete dump: the manifest is checked, and every shard file's presence and size
    (with ``verify_checksums`` also its sha256, which reads every byte)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise Eagle3Error(f"{directory} has no {MANIFEST_FILE}", hint="is it the --output-dir of eagle3 dump-hidden?")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise Eagle3Error(
            f"{directory / MANIFEST_FILE} is format version {manifest.get('format_version')}; "
            f"this eagle3 reads {FORMAT_VERSION}"
        )
    if manifest.get("complete") is not True:
        raise Eagle3Error(
            f"the dump in {directory} is not complete", hint="rerun the same dump-hidden command to finish it"
        )
    shards = parse_shard_records(manifest, directory)
    for record in shards:
        check_shard_file(directory, record, verify_checksum=verify_checksums)
    return HiddenStateDump(directory, manifest, shards)


def open_growing_dump(directory: str | Path, *, verify_checksums: bool = False) -> HiddenStateDump:
    """A complete dump (as :func:`open_dump`), or one ``dump-hidden`` is still writing: its
    shards whose record has been written (a record follows its shard's rename, and the file
    must have the recorded size). Raises until the run has planned the dump and finished a shard."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is not None and manifest.get("complete") is True:
        return open_dump(directory, verify_checksums=verify_checksums)
    if manifest is None or manifest.get("format_version") != FORMAT_VERSION or not isinstance(manifest.get("planned"), dict):
        raise Eagle3Error(
            f"{directory} holds no dump-hidden run of this eagle3 version that has started writing shards",
            hint="start dump-hidden with --output-dir pointing here, and train once its first shard is written",
        )
    shards = []
    for path in sorted((directory / SHARDS_DIR).glob(f"shard-*{RECORD_SUFFIX}")):
        number = path.name.removeprefix("shard-").removesuffix(RECORD_SUFFIX)
        record = read_record(directory, int(number)) if number.isdigit() else None
        if record is not None and (directory / record.file).is_file() and (directory / record.file).stat().st_size == record.num_bytes:
            if verify_checksums:
                check_shard_file(directory, record, verify_checksum=True)
            shards.append(record)
    if not shards:
        raise Eagle3Error(
            f"the dump in {directory} has no finished shard yet", hint="train once dump-hidden has written its first shard"
        )
    return HiddenStateDump(directory, manifest, tuple(shards))


def parse_shard_records(manifest: dict[str, Any], directory: Path) -> tuple[ShardRecord, ...]:
    """The manifest's shard records, which must be shards 0..K-1 in order."""
    try:
        shards = tuple(ShardRecord.from_json(entry) for entry in manifest["shards"])
        sizes = [int(manifest["target"][key]) for key in ("hidden_size", "vocab_size")]
    except (KeyError, TypeError, ValueError) as error:
        raise Eagle3Error(f"{directory / MANIFEST_FILE} is malformed: {error}") from error
    if manifest.get("dtype") not in DUMP_DTYPES or min(sizes) <= 0:
        raise Eagle3Error(f"{directory / MANIFEST_FILE} is malformed: dtype {manifest.get('dtype')!r}, sizes {sizes}")
    if [record.index for record in shards] != list(range(len(shards))):
        raise Eagle3Error(f"{directory / MANIFEST_FILE} does not list shards 0..{len(shards) - 1} in order")
    return shards


def check_shard_file(directory: Path, record: ShardRecord, *, verify_checksum: bool) -> None:
    """Raise when the shard file is missing, of the wrong size, or (if asked) fails its sha256."""
    path = directory / record.file
    if not path.is_file():
        raise Eagle3Error(
            f"shard {path} listed in {MANIFEST_FILE} is missing", hint="rerun the dump command to recompute it"
        )
    size = path.stat().st_size
    if size != record.num_bytes:
        raise Eagle3Error(
            f"shard {path} has {size} bytes, {MANIFEST_FILE} says {record.num_bytes} (truncated or changed)",
            hint="rerun the dump command to recompute it",
        )
    if verify_checksum and sha256_file(path) != record.sha256:
        raise Eagle3Error(
            f"shard {path} fails its sha256 checksum (corrupted or changed)",
            hint="rerun the dump command to recompute it",
        )
