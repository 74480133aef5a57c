"""Benchmark questions in the EAGLE / MT-bench ``question.jsonl`` format.

A record is ``{"question_id", "category", "turns": [str, ...], "reference"?}``; every turn is
asked in order, each extending the conversation so far.

Where questions come from, in order: ``--bench-data FILE``; the four files bundled with the
package (``mt_bench``, ``alpaca``, ``gsm8k``, ``humaneval``: EAGLE's own, the ones AngelSlim's
``spec_benchmark.py`` reads from ``dataset/<name>/question.jsonl``, so τ is comparable with
their tables; origin and licenses in ``data/SOURCES.md``); or a hub dataset when asked for
with ``hub:`` (``hub:mt_bench`` for the known mapping of a bundled name, ``hub:ORG/NAME[:split]``
for any dataset whose rows carry EAGLE's ``turns``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error

BUNDLED_BENCH_NAMES = ("mt_bench", "alpaca", "gsm8k", "humaneval")
HUB_PREFIX = "hub:"


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]


def read_question_file(path: Path) -> list[Question]:
    """Read a ``question.jsonl``; a malformed line is an error naming file and line."""
    if not path.is_file():
        raise Eagle3Error(f"question file {path} does not exist", hint="pass an existing --bench-data file")
    lines = enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
    questions = [parse_question(line, f"{path} line {number}") for number, line in lines if line.strip()]
    if not questions:
        raise Eagle3Error(f"question file {path} holds no questions")
    return questions


def parse_question(line: str, where: str) -> Question:
    """One JSON line → :class:`Question`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise Eagle3Error(f"{where}: invalid JSON ({error.msg})") from error
    turns = record.get("turns") if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise Eagle3Error(f"{where}: 'turns' must be a non-empty list of non-empty strings")
    if "question_id" not in record:
        raise Eagle3Error(f"{where}: missing 'question_id'")
    return Question(record["question_id"], str(record.get("category", "")), tuple(turns))


def bundled_questions_dir() -> Path:
    """The folder holding ``<name>/question.jsonl`` for every bundled bench name."""
    return Path(str(resources.files("eagle3cli.bench") / "data"))


def bundled_question_file(name: str) -> Path:
    return bundled_questions_dir() / name / "question.jsonl"


# Hub datasets for each bundled bench name: (dataset, config, split, row → Question).
def _mt_bench(row: dict[str, Any], index: int) -> Question:
    return Question(row.get("prompt_id", index), row.get("category", ""), tuple(row["prompt"]))


def _alpaca(row: dict[str, Any], index: int) -> Question:
    text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return Question(index, "", (text,))


def _gsm8k(row: dict[str, Any], index: int) -> Question:
    return Question(index, "math", (row["question"],))


def _humaneval(row: dict[str, Any], index: int) -> Question:
    return Question(row.get("task_id", index), "code", ("Complete the code I provided.\n" + row["prompt"],))


def _eagle_format(row: dict[str, Any], index: int) -> Question:
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(turn, str) and turn.strip() for turn in turns):
        raise Eagle3Error(
            f"hub dataset row {index} has no 'turns' list of strings (EAGLE's question format)",
            hint="use a dataset with question_id/category/turns rows, or hub:mt_bench|alpaca|gsm8k|humaneval",
        )
    return Question(row.get("question_id", index), str(row.get("category") or ""), tuple(turns))


HUB_SOURCES = {
    "mt_bench": ("HuggingFaceH4/mt_bench_prompts", None, "train", _mt_bench),
    "alpaca": ("tatsu-lab/alpaca", None, "train", _alpaca),
    "gsm8k": ("openai/gsm8k", "main", "test", _gsm8k),
    "humaneval": ("openai/openai_humaneval", None, "test", _humaneval),
}


def hub_source(spec: str) -> tuple[str, str | None, str, Any]:
    """``mt_bench`` (a bundled name's hub twin) or ``ORG/NAME[:split]`` → how to load and convert it."""
    if spec in HUB_SOURCES:
        return HUB_SOURCES[spec]
    name, _, split = spec.partition(":")
    for dataset, config, default_split, convert in HUB_SOURCES.values():
        if dataset == name:
            return dataset, config, split or default_split, convert
    if "/" not in name:
        raise Eagle3Error(
            f"--bench-name hub:{spec} names no hub dataset",
            hint=f"use hub:ORG/NAME[:split] or hub:{{{','.join(HUB_SOURCES)}}}",
        )
    return name, None, split or "train", _eagle_format


def load_hub_questions(spec: str) -> list[Question]:
    import datasets

    name, config, split, convert = hub_source(spec)
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as error:
        raise Eagle3Error(
            f"could not load {name} from the hub: {error}",
            hint="check the name and your network, or use a bundled --bench-name or --bench-data question.jsonl",
        ) from error
    return [convert(row, index) for index, row in enumerate(rows)]


def load_questions(bench_name: str, bench_data: Path | None) -> list[Question]:
    """Questions from ``bench_data`` if given, else the bundled file or hub dataset ``bench_name`` names."""
    if bench_data is not None:
        return read_question_file(bench_data)
    if bench_name.startswith(HUB_PREFIX):
        return load_hub_questions(bench_name.removeprefix(HUB_PREFIX))
    if bench_name not in BUNDLED_BENCH_NAMES:
        raise Eagle3Error(
            f"unknown bench name {bench_name!r}",
            hint=f"use one of {', '.join(BUNDLED_BENCH_NAMES)} (bundled), hub:ORG/NAME, or --bench-data question.jsonl",
        )
    return read_question_file(bundled_question_file(bench_name))


def select_questions(questions: list[Question], begin: int | None, end: int | None) -> list[Question]:
    """``questions[begin:end]`` (AngelSlim's --question-begin/--question-end), never empty."""
    selected = questions[begin:end]
    if not selected:
        raise Eagle3Error(f"--question-begin {begin} / --question-end {end} select no question of {len(questions)}")
    return selected
