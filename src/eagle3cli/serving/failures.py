"""``failed.jsonl``: the records a run could not regenerate, each with its reason.

A line is the input record in canonical form plus ``input_index`` (and ``answer`` with several
answers per record) and ``reason``, so the file can itself be given to ``--data``. Lines are appended and flushed as failures happen. Failed
records are not done: a rerun retries them and the file is rewritten — it lists this run's
failures, plus those of earlier runs that this run did not reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eagle3cli.data.records import Conversation
from eagle3cli.serving.shards import slot_address, slot_of


class FailedLog:
    """Append failures to ``path``; keep the earlier run's entries that were not retried."""

    def __init__(self, path: Path, *, answers: int = 1) -> None:
        self.path = Path(path)
        self.answers = answers
        self.earlier = _read_entries(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("wb")
        self.failed_indices: set[int] = set()

    def add(self, slot: int, conversation: Conversation, reason: str) -> None:
        """Log the record of ``slot`` (input index x answers + answer number)."""
        self._write({**conversation.to_json(), **slot_address(slot, self.answers), "reason": reason})
        self.failed_indices.add(slot)

    def close(self, is_done: Callable[[int, str], bool]) -> int:
        """Carry over the earlier failures this run neither retried nor completed; return how many."""
        kept = [entry for entry in self.earlier
                if (slot := slot_of(entry, self.answers)) not in self.failed_indices and not is_done(slot, entry["id"])]
        for entry in kept:
            self._write(entry)
        self._handle.close()
        return len(kept)

    def _write(self, entry: dict[str, Any]) -> None:
        self._handle.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")
        self._handle.flush()


def _read_entries(path: Path) -> list[dict[str, Any]]:
    """Entries of an earlier ``failed.jsonl``; a line torn by a kill is ignored."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("input_index"), int) and "id" in entry:
            entries.append(entry)
    return entries
