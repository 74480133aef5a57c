"""Inputs for ``eagle3 sample`` tests and readers of what it wrote."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def sharegpt(index: int, *questions: str, system: str | None = None) -> dict[str, Any]:
    """A ShareGPT record ``s{index}``: the questions, each with an old answer to be replaced."""
    turns = [{"from": "system", "value": system}] if system else []
    for question in questions or (f"question {index}",):
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": "the dataset's old answer"}]
    return {"id": f"s{index}", "conversations": turns}


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def shard_records(output_dir: Path) -> list[dict[str, Any]]:
    """Every record of the finished shards, shards in name order."""
    shards = sorted((output_dir / "shards").glob("shard-*.jsonl"))
    return [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]


def num_written_records(shards: Path) -> int:
    """Records completed so far: per shard its journal when there is one (it is the truth, and
    a shard being finished exists beside its journal for a moment), else the finished shard."""
    journals = {path.name.removesuffix(".partial") for path in shards.glob("*.partial")}
    files = [*shards.glob("*.partial"), *(path for path in shards.glob("*.jsonl") if path.name not in journals)]
    return sum(_complete_lines(path) for path in files)


def _complete_lines(path: Path) -> int:
    """Whole lines of ``path`` (a torn last line is redone on resume); 0 if the run just removed it."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_written_records(shards: Path, *, at_least: int, process: subprocess.Popen[Any], timeout_s: float) -> None:
    """Wait until a running ``eagle3 sample`` has written ``at_least`` records."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if shards.exists() and num_written_records(shards) >= at_least:
            return
        if process.poll() is not None:
            pytest.fail(f"sample exited early: {process.communicate()[1]}")
        time.sleep(0.01)
    pytest.fail(f"sample wrote fewer than {at_least} records in {timeout_s:g} s")
