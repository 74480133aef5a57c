"""Read chat records from local files, shard folders, globs or a hub dataset.

A source is a ``.jsonl``/``.json``/``.parquet`` file, a folder (its files of those types,
sorted by name), a glob (``data/*.jsonl``), or a hub dataset ``org/name`` (split
``train``) or ``org/name:split``, loaded with ``datasets.load_dataset``.

Every record gets an input index (its position in the whole input stream, bad records
included) and a location for messages: ``line N`` (1-based) in ``.jsonl`` files, where
blank lines are not records, and ``record N`` (0-based index) everywhere else.
A bad record either raises :class:`BadRecordError` or is skipped and counted in
:class:`ReadStats`; none is dropped silently.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eagle3cli.config import RecordSettings
from eagle3cli.data.formats import RecordProblem, normalise_record
from eagle3cli.data.records import Conversation
from eagle3cli.errors import Eagle3Error

logger = logging.getLogger(__name__)

FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet")
NUM_SKIPPED_EXAMPLES = 5
PARQUET_BATCH_SIZE = 1024
HUB_ID_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*/[\w.-]+)(?::(?P<split>[\w.-]+))?$")


class BadRecordError(Eagle3Error):
    """A record that cannot be read, named by file (or hub dataset), location and reason."""

    def __init__(self, path: str, location: str, reason: str, *, kind: str) -> None:
        self.path = path
        self.location = location
        self.reason = reason
        self.kind = kind
        super().__init__(
            f"{path}, {location}: {reason}",
            hint="fix or remove the record, or skip bad records (on_bad_record='skip')",
        )


@dataclass
class ReadStats:
    """Counts of one pass over a source: records read, records skipped and why."""

    num_read: int = 0
    num_skipped: int = 0
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add_skipped(self, error: BadRecordError) -> None:
        """Count one skipped record; keep its location and reason among the first examples."""
        self.num_skipped += 1
        self.skipped_by_reason[error.kind] += 1
        if len(self.examples) < NUM_SKIPPED_EXAMPLES:
            self.examples.append(error.message)


@dataclass(frozen=True)
class HubDataset:
    """A hub dataset name and split, e.g. ``org/name:test``."""

    name: str
    split: str

    def __str__(self) -> str:
        return f"{self.name}:{self.split}"


@dataclass(frozen=True)
class RawRecord:
    """One record before decoding: where it came from and its value (bytes for ``.jsonl``)."""

    path: str
    location: str
    default_id: str
    value: Any


Source = Path | HubDataset


class ConversationReader:
    """Iterate ``(input_index, Conversation)`` over resolved sources; see :func:`read_conversations`.

    ``stats`` describes the current (or last) pass and is reset when a new pass starts.
    """

    def __init__(
        self,
        sources: list[Source],
        *,
        reading: RecordSettings,
        require_assistant: bool,
        num_samples: int | None,
    ) -> None:
        self.sources = sources
        self.reading = reading
        self.require_assistant = require_assistant
        self.num_samples = num_samples
        self.stats = ReadStats()

    def __iter__(self) -> Iterator[tuple[int, Conversation]]:
        self.stats = stats = ReadStats()
        for input_index, raw in enumerate(_raw_records(self.sources)):
            conversation = self._normalise(raw)
            if conversation is None:
                continue
            stats.num_read += 1
            yield input_index, conversation
            if stats.num_read == self.num_samples:
                return

    def _normalise(self, raw: RawRecord) -> Conversation | None:
        """Normalise one record; on a bad one raise or count it, following the policy."""
        try:
            record = _decode(raw.value)
            return normalise_record(
                record,
                data_format=self.reading.format,
                default_id=raw.default_id,
                require_assistant=self.require_assistant,
            )
        except RecordProblem as problem:
            error = BadRecordError(raw.path, raw.location, problem.reason, kind=problem.kind)
            if self.reading.on_bad_record == "error":
                raise error from None
            self.stats.add_skipped(error)
            logger.debug("skipped %s", error.message)
            return None


def read_conversations(
    source: str,
    reading: RecordSettings = RecordSettings(),
    *,
    require_assistant: bool = True,
    num_samples: int | None = None,
) -> ConversationReader:
    """Return a reader over the conversations of ``source`` (file, folder, glob or hub id),
    read as ``reading`` says (format, bad-record policy; a stage config that has those fields).

    The source is resolved now (a missing path raises :class:`Eagle3Error`); files are
    read lazily, ``.jsonl`` line by line. Iterating yields ``(input_index, conversation)``;
    ``num_samples`` stops after that many good records. ``require_assistant`` rejects
    records without an assistant turn (set it to ``False`` for prompt-only data, whose user
    turns may also follow each other).
    """
    if num_samples is not None and num_samples < 1:
        raise Eagle3Error(f"num_samples must be 1 or more, got {num_samples}", hint="leave it unset to read all")
    return ConversationReader(
        resolve_sources(source),
        reading=reading,
        require_assistant=require_assistant,
        num_samples=num_samples,
    )


def resolve_sources(source: str) -> list[Source]:
    """Turn a source string into the files (sorted) or the hub dataset to read."""
    path = Path(source)
    if path.is_dir():
        files = sorted(child for child in path.iterdir() if child.is_file() and child.suffix in FILE_SUFFIXES)
        if not files:
            raise Eagle3Error(f"folder {source} has no {'/'.join(FILE_SUFFIXES)} files")
        return list(files)
    if path.is_file():
        return [_checked_file(path)]
    if glob.has_magic(source):
        matches = sorted(Path(match) for match in glob.glob(source, recursive=True))
        files = [_checked_file(match) for match in matches if match.is_file()]
        if not files:
            raise Eagle3Error(f"no files match {source}")
        return files
    hub_match = HUB_ID_PATTERN.match(source)
    if hub_match and path.suffix not in FILE_SUFFIXES:
        return [HubDataset(hub_match["name"], hub_match["split"] or "train")]
    raise Eagle3Error(
        f"data source {source} not found",
        hint="give an existing .jsonl/.json/.parquet file, a folder of them, a glob, or a hub dataset org/name[:split]",
    )


def _checked_file(path: Path) -> Path:
    if path.suffix not in FILE_SUFFIXES:
        raise Eagle3Error(f"unsupported data file {path}", hint=f"use {', '.join(FILE_SUFFIXES)} files")
    return path


def _raw_records(sources: list[Source]) -> Iterator[RawRecord]:
    for source in sources:
        if isinstance(source, HubDataset):
            yield from _hub_records(source)
        elif source.suffix == ".jsonl":
            yield from _jsonl_records(source)
        elif source.suffix == ".json":
            yield from _indexed_records(str(source), source.stem, _json_file_records(source))
        else:
            yield from _indexed_records(str(source), source.stem, _parquet_rows(source))


def _jsonl_records(path: Path) -> Iterator[RawRecord]:
    """Stream a ``.jsonl`` file; each non-blank line is one record, decoded later."""
    record_index = 0
    with path.open("rb") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            yield RawRecord(str(path), f"line {line_number}", f"{path.stem}-{record_index}", line)
            record_index += 1


def _indexed_records(path: str, stem: str, records: Iterator[Any]) -> Iterator[RawRecord]:
    for record_index, record in enumerate(records):
        yield RawRecord(path, f"record {record_index}", f"{stem}-{record_index}", record)


def _decode(value: Any) -> Any:
    """Decode a ``.jsonl`` line; values from other sources are already decoded."""
    if not isinstance(value, bytes):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise RecordProblem("invalid JSON", f"{error.msg} at column {error.colno}") from None
    except UnicodeDecodeError:
        raise RecordProblem("invalid JSON", "not valid UTF-8 text") from None


def _json_file_records(path: Path) -> Iterator[Any]:
    """Records of a ``.json`` file: a list of records, or an object holding a single list."""
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise Eagle3Error(f"{path} is not valid JSON: {error}", hint="a .jsonl file needs the .jsonl suffix") from None
    if isinstance(document, dict) and len(document) == 1 and not {"conversations", "messages"} & document.keys():
        document = next(iter(document.values()))
    if not isinstance(document, list):
        raise Eagle3Error(f"{path} holds no list of records", hint="expected a JSON array, or an object with one list")
    yield from document


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow
    import pyarrow.parquet

    try:
        parquet_file = pyarrow.parquet.ParquetFile(path)
    except pyarrow.ArrowException as error:
        raise Eagle3Error(f"{path} is not a readable parquet file: {error}") from None
    for batch in parquet_file.iter_batches(batch_size=PARQUET_BATCH_SIZE):
        yield from batch.to_pylist()


def _hub_records(dataset: HubDataset) -> Iterator[RawRecord]:
    import datasets

    try:
        rows = datasets.load_dataset(dataset.name, split=dataset.split)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise Eagle3Error(
            f"could not load hub dataset {dataset}: {error}",
            hint="no local path of that name exists either; check the name, the split and your network",
        ) from None
    stem = dataset.name.rsplit("/", 1)[-1]
    yield from _indexed_records(str(dataset), f"{stem}-{dataset.split}", iter(rows))
