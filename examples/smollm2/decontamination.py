"""Find training prompts that duplicate a benchmark question, exactly or nearly.

Text is compared after :func:`normalise`: Unicode NFKC, lowercase, every run of characters
that are not letters, digits or ``_`` becomes one space. So punctuation, line breaks,
indentation and quoting do not hide a copy ("provided.from typing" and "provided. from
typing" are the same words).

A prompt duplicates a benchmark question when, with ``words`` its normalised word list:

* **exact** — the normalised texts are equal; or
* **near** — either (a) the Jaccard similarity of their sets of word 5-grams is at least
  0.5, which catches reworded or re-wrapped copies of whole questions, or (b) the prompt
  contains at least half of the question's word 8-grams — for a question shorter than 8
  words, the whole question as consecutive words — which catches a question pasted inside
  a longer prompt (a HumanEval prompt behind another instruction, an MT-Bench question
  with a preamble). A text shorter than n words counts as one n-gram of all its words.

Asking for half of the 8-grams, not any one, keeps boilerplate shared by distinct problems
("write a function that returns true if the", a doctest list of numbers) from counting as
a copy; a pasted question keeps all of its 8-grams.
Each prompt is compared with every user turn of every benchmark question (``turns`` in
``question.jsonl``); a multi-turn prompt is compared turn by turn.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

JACCARD_NGRAM = 5
JACCARD_THRESHOLD = 0.5
OVERLAP_NGRAM = 8
CONTAINMENT_THRESHOLD = 0.5
NON_WORD = re.compile(r"[^\w]+")

Match = Literal["exact", "near"]


def normalise(text: str) -> str:
    """Lowercase ``text`` and turn every run of non-word characters into one space."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return NON_WORD.sub(" ", folded).strip()


def word_ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``words``; a shorter list is one n-gram of all its words."""
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[index : index + n]) for index in range(len(words) - n + 1)}


def jaccard(first: set[tuple[str, ...]], second: set[tuple[str, ...]]) -> float:
    """Jaccard similarity of two n-gram sets (0 when both are empty)."""
    union = len(first | second)
    return len(first & second) / union if union else 0.0


@dataclass(frozen=True)
class BenchQuestion:
    """One user turn of a benchmark question, normalised, with its n-gram sets."""

    bench: str
    question_id: str
    text: str
    shingles: frozenset[tuple[str, ...]]
    long_ngrams: frozenset[tuple[str, ...]]

    @classmethod
    def from_turn(cls, bench: str, question_id: str, turn: str) -> BenchQuestion:
        words = normalise(turn).split()
        return cls(
            bench=bench,
            question_id=question_id,
            text=" ".join(words),
            shingles=frozenset(word_ngrams(words, JACCARD_NGRAM)),
            long_ngrams=frozenset(word_ngrams(words, OVERLAP_NGRAM)),
        )


@dataclass(frozen=True)
class Hit:
    """Why a prompt was removed: the benchmark file, question and kind of match."""

    bench: str
    question_id: str
    match: Match


@dataclass
class BenchIndex:
    """All benchmark user turns, indexed for fast exact and near-duplicate lookups."""

    questions: list[BenchQuestion] = field(default_factory=list)
    by_text: dict[str, int] = field(default_factory=dict)
    by_shingle: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(list))
    by_long_ngram: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(list))
    short_questions: list[int] = field(default_factory=list)

    def add(self, question: BenchQuestion) -> None:
        """Index one benchmark turn (the first question wins ties in lookups)."""
        position = len(self.questions)
        self.questions.append(question)
        self.by_text.setdefault(question.text, position)
        for shingle in question.shingles:
            self.by_shingle[shingle].append(position)
        for ngram in question.long_ngrams:
            self.by_long_ngram[ngram].append(position)
        if len(question.text.split()) < OVERLAP_NGRAM:
            self.short_questions.append(position)

    def find(self, text: str) -> Hit | None:
        """The first benchmark turn that ``text`` duplicates, or ``None``."""
        words = normalise(text).split()
        if not words:
            return None
        exact = self.by_text.get(" ".join(words))
        if exact is not None:
            return self._hit(exact, "exact")
        shingles = word_ngrams(words, JACCARD_NGRAM)
        candidates = sorted({position for shingle in shingles for position in self.by_shingle.get(shingle, ())})
        for position in candidates:
            if jaccard(shingles, set(self.questions[position].shingles)) >= JACCARD_THRESHOLD:
                return self._hit(position, "near")
        return self._find_contained(words)

    def _find_contained(self, words: list[str]) -> Hit | None:
        """The first question with half its 8-grams in ``words`` or, if short, inside it."""
        shared: Counter[int] = Counter()
        for ngram in word_ngrams(words, OVERLAP_NGRAM):
            shared.update(self.by_long_ngram.get(ngram, ()))
        padded = f" {' '.join(words)} "
        contained = [
            position
            for position, count in shared.items()
            if count >= CONTAINMENT_THRESHOLD * len(self.questions[position].long_ngrams)
        ]
        contained += [position for position in self.short_questions if f" {self.questions[position].text} " in padded]
        return self._hit(min(contained), "near") if contained else None

    def find_any(self, texts: Iterable[str]) -> Hit | None:
        """The first hit among several texts (the user turns of one prompt)."""
        for text in texts:
            hit = self.find(text)
            if hit is not None:
                return hit
        return None

    def _hit(self, position: int, match: Match) -> Hit:
        question = self.questions[position]
        return Hit(bench=question.bench, question_id=question.question_id, match=match)


def bench_files(bench_dir: Path) -> list[Path]:
    """The ``*/question.jsonl`` files under ``bench_dir``, sorted by benchmark name."""
    return sorted(Path(bench_dir).glob("*/question.jsonl"))


def load_bench_index(files: list[Path]) -> BenchIndex:
    """Index every user turn of every question in ``files``; the benchmark is the folder name."""
    index = BenchIndex()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            for turn in record["turns"]:
                index.add(BenchQuestion.from_turn(path.parent.name, str(record["question_id"]), turn))
    return index
