"""Sampled records in shards named by input index range, resumable exactly.

Shard ``k`` holds the records of input indices ``[k * shard_size, (k + 1) * shard_size)``
(bad records included in the numbering, so names do not depend on what was skipped):
``shards/shard-000050000-000099999.jsonl``. Three files per shard, the last two with
suffixes the dataset readers ignore (so ``--data OUTPUT/shards`` reads only records):

- ``….jsonl`` — the records, in input order; written to a temporary file and renamed.
- ``….jsonl.done`` — the sidecar: the input index and id of every completed record (and of
  records left out on purpose, with the reason); written, also atomically, after the shard.
- ``….jsonl.partial`` — the journal of a shard being filled: one line per completed record
  (index, id, record), appended and flushed as records finish in any order. When the shard's
  input range is over and nothing of it is in flight, the shard and sidecar are written from
  it and it is deleted.

With several answers per input record (``answers``), the store is addressed by slot (input
index x answers + answer number) and entries carry ``answer``; shards still cover input ranges.

The journal, when there is one, is the truth; otherwise the sidecar is. A rerun skips exactly
the completed indices, and a record added to a finished shard (one that failed before)
reopens it: the journal is rebuilt from the shard and sidecar, then finished again. A
journal line torn by a kill is cut off on load; that record is simply redone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write, atomic_write_json

INDEX_DIGITS = 9
JOURNAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".done"


@dataclass
class ShardState:
    """What a run knows of one shard: completed indices (→ id), the open journal, work in flight."""

    number: int
    done: dict[int, str]
    journal: IO[bytes] | None = None
    num_in_flight: int = 0
    input_closed: bool = False


class ShardStore:
    """The shards of one output folder: which records are done, and writing new ones."""

    def __init__(self, directory: Path, shard_size: int, *, answers: int = 1) -> None:
        self.directory = Path(directory)
        self.shard_size = shard_size
        self.answers = answers
        self.directory.mkdir(parents=True, exist_ok=True)
        self._states: dict[int, ShardState] = {}
        for temporary in self.directory.glob(".shard-*.tmp"):
            temporary.unlink()

    def shard_path(self, number: int) -> Path:
        start = number * self.shard_size
        stop = start + self.shard_size - 1
        return self.directory / f"shard-{start:0{INDEX_DIGITS}d}-{stop:0{INDEX_DIGITS}d}.jsonl"

    def is_done(self, slot: int, record_id: str) -> bool:
        """Whether the record at ``slot`` is complete; fails if it was done under another id."""
        done = self._state(slot).done
        if slot in done and done[slot] != record_id:
            raise Eagle3Error(
                f"input record {slot // self.answers} has id '{record_id}', but '{done[slot]}' was sampled there",
                hint="the input changed since the first run: use a new --output-dir",
            )
        return slot in done

    def begin(self, slot: int) -> None:
        """Note that the record at ``slot`` is in flight (its shard cannot be finished yet)."""
        self._state(slot).num_in_flight += 1

    def add(self, slot: int, record_id: str, record: dict[str, Any] | None, dropped: str | None = None) -> None:
        """Journal a completed record (``record``), or one left out on purpose (``dropped`` = reason)."""
        state = self._state(slot)
        entry: dict[str, Any] = {**slot_address(slot, self.answers), "id": record_id}
        entry.update({"record": record} if dropped is None else {"dropped": dropped})
        journal = self._journal(state)
        journal.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")
        journal.flush()
        state.done[slot] = record_id
        self.end(slot)

    def end(self, slot: int) -> None:
        """The record at ``slot`` is no longer in flight (added, failed or abandoned)."""
        state = self._state(slot)
        state.num_in_flight -= 1
        self._finish_if_ready(state)

    def close_before(self, slot: int) -> None:
        """The input has moved past every shard before the one of ``slot``: finish those."""
        for number in [number for number in self._states if number < slot // (self.shard_size * self.answers)]:
            self._states[number].input_closed = True
            self._finish_if_ready(self._states[number])

    def close_all(self) -> None:
        """The input is over: finish every shard with nothing in flight."""
        for state in list(self._states.values()):
            state.input_closed = True
            self._finish_if_ready(state)

    def release(self) -> None:
        """Close open journals without finishing their shards (a stopped run; the rerun resumes)."""
        for state in self._states.values():
            if state.journal is not None:
                state.journal.close()
                state.journal = None

    def _slot(self, entry: dict[str, Any]) -> int:
        return slot_of(entry, self.answers)

    def _state(self, slot: int) -> ShardState:
        number = slot // (self.shard_size * self.answers)
        if number not in self._states:
            self._states[number] = ShardState(number, self._load_done(number))
        return self._states[number]

    def _load_done(self, number: int) -> dict[int, str]:
        journal, sidecar = (_with_suffix(self.shard_path(number), suffix) for suffix in (JOURNAL_SUFFIX, SIDECAR_SUFFIX))
        entries = _read_journal(journal) if journal.exists() else _read_sidecar(sidecar) if sidecar.exists() else []
        return {self._slot(entry): entry["id"] for entry in entries}

    def _journal(self, state: ShardState) -> IO[bytes]:
        """The shard's journal, opened for appending; rebuilt from a finished shard if needed."""
        if state.journal is None:
            shard = self.shard_path(state.number)
            journal = _with_suffix(shard, JOURNAL_SUFFIX)
            if not journal.exists() and _with_suffix(shard, SIDECAR_SUFFIX).exists():
                entries = list(_entries_of_finished_shard(shard))
                atomic_write(journal, lambda handle: handle.writelines(_json_line(entry) for entry in entries))
            state.journal = journal.open("ab")
        return state.journal

    def _finish_if_ready(self, state: ShardState) -> None:
        if not state.input_closed or state.num_in_flight:
            return
        if state.journal is not None:
            self._write_shard(state)
        del self._states[state.number]

    def _write_shard(self, state: ShardState) -> None:
        """Shard (records in input order), then sidecar, from the journal; then drop the journal."""
        assert state.journal is not None
        state.journal.close()
        state.journal = None
        shard = self.shard_path(state.number)
        journal = _with_suffix(shard, JOURNAL_SUFFIX)
        entries = sorted({self._slot(entry): entry for entry in _read_journal(journal)}.values(), key=self._slot)
        records = [entry for entry in entries if "record" in entry]
        atomic_write(shard, lambda handle: handle.writelines(_json_line(entry["record"]) for entry in records))
        atomic_write_json(_with_suffix(shard, SIDECAR_SUFFIX), {
            "completed": [_address(entry) for entry in records],
            "dropped": [{**_address(entry), "reason": entry["dropped"]} for entry in entries if "record" not in entry],
        })
        journal.unlink()


def slot_of(entry: dict[str, Any], answers: int) -> int:
    """The slot of a journal, sidecar or failed.jsonl entry: input index x answers + answer number."""
    return entry["input_index"] * answers + entry.get("answer", 0)


def slot_address(slot: int, answers: int) -> dict[str, int]:
    """``input_index`` (and ``answer`` with several answers per record) of ``slot``, as entries store them."""
    input_index, answer = divmod(slot, answers)
    return {"input_index": input_index, **({"answer": answer} if answers > 1 else {})}


def _address(entry: dict[str, Any]) -> dict[str, Any]:
    """Where an entry's record came from: input index, answer number (if any) and id."""
    return {key: entry[key] for key in ("input_index", "answer", "id") if key in entry}


def _with_suffix(shard: Path, suffix: str) -> Path:
    return shard.with_name(shard.name + suffix)


def _json_line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n"


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Journal entries; a last line torn by a kill (no newline, or cut JSON) is cut off the file."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    entries = []
    good_bytes = 0
    for number, line in enumerate(lines[:-1], start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines) - 1:
                raise Eagle3Error(f"{path}, line {number}: not a journal entry", hint="delete the file to redo that shard") from None
            break
        good_bytes += len(line) + 1
    if good_bytes != len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return entries


def _read_sidecar(path: Path) -> list[dict[str, Any]]:
    """Completed and dropped entries of a finished shard's sidecar."""
    try:
        sidecar = json.loads(path.read_bytes())
        return [*sidecar["completed"], *sidecar["dropped"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise Eagle3Error(f"{path} is not a shard sidecar ({error})", hint="delete it and its shard to redo that shard") from None


def _entries_of_finished_shard(shard: Path) -> Iterator[dict[str, Any]]:
    """Journal entries rebuilt from a finished shard and its sidecar (their lines correspond)."""
    sidecar = json.loads(_with_suffix(shard, SIDECAR_SUFFIX).read_bytes())
    records = [json.loads(line) for line in shard.read_bytes().splitlines() if line.strip()]
    if len(records) != len(sidecar["completed"]):
        raise Eagle3Error(
            f"{shard} has {len(records)} records but its sidecar lists {len(sidecar['completed'])}",
            hint="the shard was edited by hand: delete it and its .done sidecar to redo it",
        )
    for entry, record in zip(sidecar["completed"], records):
        yield {**_address(entry), "record": record}
    for entry in sidecar["dropped"]:
        yield {**_address(entry), "dropped": entry["reason"]}
