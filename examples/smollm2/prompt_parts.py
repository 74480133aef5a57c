"""Pieces shared by the team-written prompt families: names, audiences, answer styles.

Every family is a function ``make(rng) -> str`` that draws its slots from a seeded
``random.Random``; the pieces here keep the families' phrasing from all sounding alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

NAMES = (
    "Amara",
    "Ben",
    "Chen",
    "Dana",
    "Elif",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kavya",
    "Luis",
    "Maya",
    "Nikolai",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tomas",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
    "Aisha",
    "Bruno",
    "Carmen",
    "Diego",
    "Emeka",
    "Freya",
    "Gabriel",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
)
AUDIENCES = (
    "a ten-year-old",
    "a high-school student",
    "a complete beginner",
    "a busy manager",
    "my grandmother",
    "a first-year university student",
    "someone who speaks English as a second language",
    "a software engineer",
    "a curious teenager",
    "a nurse",
    "a small-business owner",
    "an expert in the field",
)
ANSWER_STYLES = (
    "",
    "",
    "",
    " Keep it under {words} words.",
    " Use bullet points.",
    " Answer in {sentences} sentences.",
    " Include one concrete example.",
    " Start with a one-sentence summary, then go into detail.",
    " Use a numbered list.",
    " Avoid jargon.",
    " End with a short takeaway.",
    " Use a table if it helps.",
    " Be concise.",
    " Explain your reasoning.",
)
GENERAL_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly and precisely.",
    "You are a friendly assistant who writes in plain, simple English.",
)
SYSTEM_PROMPTS = {
    "chat": (*GENERAL_SYSTEM_PROMPTS, "You are a knowledgeable guide who gives balanced, practical answers."),
    "code": (*GENERAL_SYSTEM_PROMPTS, "You are an experienced software engineer who writes clean, well-tested code."),
    "math": (*GENERAL_SYSTEM_PROMPTS, "You are a careful math tutor. Show your working before the final answer."),
    "writing": (*GENERAL_SYSTEM_PROMPTS, "You are a professional editor and writer with an eye for clear prose."),
}


def pick(rng: random.Random, options: Sequence[T]) -> T:
    """One option, drawn with ``rng``."""
    return options[rng.randrange(len(options))]


def pick_some(rng: random.Random, options: Sequence[T], count: int) -> list[T]:
    """``count`` distinct options, in drawn order."""
    return rng.sample(list(options), count)


def answer_style(rng: random.Random) -> str:
    """An optional instruction on length or format, with its own numbers filled in."""
    style = pick(rng, ANSWER_STYLES)
    return style.format(words=pick(rng, (50, 80, 100, 150, 200)), sentences=pick(rng, (2, 3, 4, 5)))


def capitalise(text: str) -> str:
    """``text`` with its first letter upper-cased (the rest unchanged)."""
    return text[:1].upper() + text[1:]


def join_items(items: Sequence[str]) -> str:
    """``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
