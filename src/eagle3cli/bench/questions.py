"""Benchmark questions in the EAGLE / MT-bench ``question.jsonl`` format.

A record is ``{"question_id", "category", "turns": [str, ...], "reference"?}``; every turn is
asked in order, each extending the conversation so far. Without ``--bench-data`` the
questions come from the hub through ``datasets`` (the real path; tests use local files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eagle3cli.errors import Eagle3Error

BenchName = Literal["mt_bench", "alpaca", "gsm8k", "humaneval"]


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]


def read_question_file(path: Path) -> list[Question]:
    """Read a ``question.jsonl``; a malformed line is an error naming file and line."""
    if not path.is_file():
        raise Eagle3Error(f"question file {path} does not exist", hint="pass an existing --bench-data file")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            questions.append(parse_question(line, f"{path} line {number}"))
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


# Hub datasets for each bench name: (dataset, config, split, row → Question).
def _mt_bench(row: dict[str, Any], index: int) -> Question:
    return Question(row.get("prompt_id", index), row.get("category", ""), tuple(row["prompt"]))


def _alpaca(row: dict[str, Any], index: int) -> Question:
    text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return Question(index, "", (text,))


def _gsm8k(row: dict[str, Any], index: int) -> Question:
    return Question(index, "math", (row["question"],))


def _humaneval(row: dict[str, Any], index: int) -> Question:
    return Question(row.get("task_id", index), "code", ("Complete the code I provided.\n" + row["prompt"],))


HUB_SOURCES = {
    "mt_bench": ("HuggingFaceH4/mt_bench_prompts", None, "train", _mt_bench),
    "alpaca": ("tatsu-lab/alpaca", None, "train", _alpaca),
    "gsm8k": ("openai/gsm8k", "main", "test", _gsm8k),
    "humaneval": ("openai/openai_humaneval", None, "test", _humaneval),
}


def load_questions(bench_name: str, bench_data: Path | None) -> list[Question]:
    """Questions from ``bench_data`` if given, else the hub dataset for ``bench_name``."""
    if bench_data is not None:
        return read_question_file(Path(bench_data))
    if bench_name not in HUB_SOURCES:
        raise Eagle3Error(
            f"unknown bench name {bench_name!r}",
            hint=f"use one of {', '.join(HUB_SOURCES)} or pass --bench-data question.jsonl",
        )
    import datasets

    name, config, split, convert = HUB_SOURCES[bench_name]
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as error:
        raise Eagle3Error(f"could not load {name} from the hub: {error}", hint="pass --bench-data question.jsonl") from error
    return [convert(row, index) for index, row in enumerate(rows)]


def select_questions(questions: list[Question], begin: int | None, end: int | None) -> list[Question]:
    """``questions[begin:end]`` (AngelSlim's --question-begin/--question-end), never empty."""
    selected = questions[begin:end]
    if not selected:
        raise Eagle3Error(f"--question-begin {begin} / --question-end {end} select no question of {len(questions)}")
    return selected
