"""Prompts that carry a passage: extract, summarise, rewrite, question a text — most with a follow-up turn.

    python examples/smollm2/passage_prompts.py --passages runs/split/train.jsonl \\
        --output runs/passage/prompts.jsonl --num-prompts 1600 --exclude runs/corpus/prompts.jsonl

The team-written families of ``build_prompt_corpus.py`` seldom hand the model a text to work on,
and their prompts are one user turn; MT-bench's extraction, STEM and humanities questions do, and
every MT-bench question has a second turn that builds on the first answer. A draft trained
without either proposes poorly there (over all 80 MT-bench questions with 16/3/4, τ 1.84–1.91 on
extraction, STEM, humanities and writing against 2.51–2.60 on math and coding). This script
builds such prompts from texts already at hand: the assistant answers of a regenerated records
file (``--passages``, the training split — never the held-out one, so no held-out answer leaks
into training), each answer of 300–1,800 characters a passage. Each prompt puts one passage under
one of the tasks below (the passage before or after the instruction, in one of several
wrappings); with probability ``--follow-up-rate`` a second user turn asks for more, which
``eagle3 sample`` answers after regenerating the first. Every passage is used at most once.

Kept are prompts whose user turns duplicate no benchmark question (``decontamination``: the
bundled benchmark files) and no prompt of ``--exclude``. Records are ``{"id": "passage-NNNNN",
"conversations": [{"role": "user", "content": ...}, ...]}`` (a follow-up is a second user turn
right after the first: ``eagle3 sample`` answers each in order), shuffled with the seed; the same
inputs and seed give the same bytes. ``<output>.report.json`` counts what was dropped and why.

Measured on SmolLM2 (``benchmarks/RESULTS.md``, "Prompts that hand the model a text"): one epoch
on 1,600 such prompts from the best CPU draft moved MT-bench extraction τ by +0.03 and the whole
benchmark not at all (2.08 → 2.07) — the missing τ there is not this kind of prompt.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

from decontamination import BenchIndex, bench_files, load_bench_index, normalise
from prompt_parts import pick
from self_prompts import user_texts, write_prompts

from eagle3cli.bench.questions import bundled_questions_dir
from eagle3cli.data.readers import read_conversations
from eagle3cli.errors import Eagle3Error

MIN_CHARS = 300
MAX_CHARS = 1800
TASKS = (
    "Extract every person, place, organisation and date mentioned in the text below. Return them as a JSON object with one list per kind.",
    "Extract the key facts from the following text and present them as a Markdown table with the columns Fact and Detail.",
    "List the main points of this text, one bullet each, in at most {n} bullets.",
    "Summarise the text below in {n} sentences.",
    "Summarise the following passage for a busy manager in under {words} words.",
    "Rewrite this text so that a ten-year-old can understand it.",
    "Rewrite the following passage in a more formal, academic tone.",
    "Rewrite this text in a friendly, casual tone, keeping every fact.",
    "Shorten the text below to about half its length without losing any important information.",
    "What is the main claim of this text, and what does it offer in support of it?",
    "Write {n} multiple-choice questions, with four options each and the answer marked, that test whether someone has understood this text.",
    "Point out any statements in the following text that are vague, inaccurate or unsupported, and suggest a correction for each.",
    "Give this text a title, a one-line subtitle and a short social-media post announcing it.",
    "Describe the tone of the following passage and quote the phrases that set it.",
    "Turn this passage into a short dialogue between a curious student and a teacher.",
    "Extract {n} keywords from the text below and return them as a comma-separated list, most important first.",
    "Turn the following text into a numbered outline with headings and sub-points.",
    "Critique this text: what does it do well, what is missing, and how could it be improved?",
    "Classify the following text as one of: explanation, instructions, opinion, story, or list. Explain your choice in two sentences.",
    "Answer in JSON with the keys \"topic\", \"audience\", \"summary\" and \"open_questions\", based on the text below.",
    "Write three follow-up questions a reader might ask after reading this text, and answer each briefly using only the text.",
    "Proofread the following text: fix grammar, spelling and awkward phrasing, and list the changes you made.",
)
WRAPPINGS = (
    "{task}\n\n{passage}",
    "{task}\n\nText:\n{passage}",
    '{task}\n\n"""\n{passage}\n"""',
    "{task}\n\n---\n{passage}\n---",
    "{passage}\n\n{task}",
    "Here is a text:\n\n{passage}\n\n{task}",
)
FOLLOW_UPS = (
    "Now do the same in exactly three sentences.",
    "Return the same information as a JSON object.",
    "Which of these points matters most, and why?",
    "Shorten your answer to under 50 words.",
    "Rewrite your previous answer for a ten-year-old.",
    "Add one concrete example to each point.",
    "Now write it from the point of view of a sceptic.",
    "Turn your answer into a short poem.",
    "What would an expert add to your answer?",
    "Present your answer as a table instead.",
    "Rewrite your answer as an email to a colleague.",
    "Translate the key terms in your answer into plain English definitions.",
    "Is there anything in the original text you disagree with? Explain.",
    "Give your answer again, but as a numbered list.",
)


def whole_sentences(text: str) -> str:
    """``text`` up to its last full stop or paragraph break (an answer cut at ``max_tokens``)."""
    end = max(text.rfind(". "), text.rfind(".\n"), text.rfind("\n\n"))
    return text[: end + 1].rstrip() if end > 0 else ""


def passages(path: Path) -> list[str]:
    """Assistant turns of ``path`` (read by ``eagle3cli.data.readers``, which names a bad record's
    file, line and fault) between MIN_CHARS and MAX_CHARS long, once each, in file order; an
    answer that stopped at the token limit is cut back to its last whole sentence first."""
    seen: set[str] = set()
    kept: list[str] = []
    for _, conversation in read_conversations(str(path)):
        for turn in conversation.turns:
            text = turn.content.strip() if turn.role == "assistant" else ""
            if turn.extra.get("finish_reason") == "length":
                text = whole_sentences(text)
            if MIN_CHARS <= len(text) <= MAX_CHARS and text not in seen:
                seen.add(text)
                kept.append(text)
    return kept


def prompt(rng: random.Random, passage: str) -> str:
    task = pick(rng, TASKS).format(n=rng.randint(3, 6), words=rng.choice((40, 60, 80, 100)))
    wrapping = pick(rng, WRAPPINGS)
    if wrapping.index("{passage}") < wrapping.index("{task}"):
        task = task.replace("text below", "text above").replace("the following", "the above")
    return wrapping.format(task=task, passage=passage)


def build(texts: list[str], args: argparse.Namespace, index: BenchIndex, seen: set[str]) -> tuple[list[dict], Counter]:
    rng = random.Random(args.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    counts: Counter = Counter(passages=len(texts))
    kept: list[dict] = []
    for position in order:
        if len(kept) == args.num_prompts:
            break
        turns = [prompt(rng, texts[position])]
        if rng.random() < args.follow_up_rate:
            turns.append(pick(rng, FOLLOW_UPS))
        if normalise(turns[0]) in seen:
            counts["repeats"] += 1
        elif index.find_any(turns) is not None:
            counts["benchmark duplicates"] += 1
        else:
            seen.add(normalise(turns[0]))
            conversation = [{"role": "user", "content": turn} for turn in turns]
            kept.append({"id": f"passage-{len(kept):05d}", "conversations": conversation})
    counts["with a follow-up"] = sum(len(record["conversations"]) > 1 for record in kept)
    counts["kept"] = len(kept)
    return kept, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=Path, required=True, help="records whose assistant turns become passages (training records only)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--num-prompts", type=int, default=1600, help="most prompts kept (one passage each)")
    parser.add_argument("--follow-up-rate", type=float, default=0.6, help="share of prompts given a second user turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="records files whose user turns are not repeated")
    parser.add_argument("--bench-dir", type=Path, default=bundled_questions_dir())
    args = parser.parse_args()
    if not 0 <= args.follow_up_rate <= 1:
        sys.exit(f"error: --follow-up-rate {args.follow_up_rate} is not a share between 0 and 1")
    try:
        texts = passages(args.passages)
        index = load_bench_index(bench_files(args.bench_dir))
        seen = set().union(*(user_texts(path) for path in args.exclude))
        kept, counts = build(texts, args, index, seen)
    except (Eagle3Error, OSError) as error:
        sys.exit(f"error: {error}")
    write_prompts(kept, counts, args)


if __name__ == "__main__":
    main()
