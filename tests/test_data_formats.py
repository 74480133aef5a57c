"""Normalisation of single chat records (ShareGPT, UltraChat, OpenAI) to the canonical Conversation."""

from __future__ import annotations

from typing import Any

import pytest

from eagle3cli.data.formats import RecordProblem, detect_format, normalise_record
from eagle3cli.data.records import Conversation, Turn


def normalise(record: Any, data_format: str = "auto", require_assistant: bool = True) -> Conversation:
    return normalise_record(record, data_format=data_format, default_id="file-7", require_assistant=require_assistant)


def problem_of(record: Any, data_format: str = "auto", require_assistant: bool = True) -> RecordProblem:
    with pytest.raises(RecordProblem) as caught:
        normalise(record, data_format, require_assistant)
    return caught.value


SHAREGPT = {
    "id": "share-1",
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!", "markdown": None},
    ],
    "model": "gpt-4",
}
ULTRACHAT = {
    "prompt": "Hi",
    "prompt_id": "abc123",
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
}
OPENAI = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "name": "bot"}]}
HELLO = (Turn("user", "Hi"), Turn("assistant", "Hello!"))


def test_sharegpt_maps_roles_and_drops_extra_keys() -> None:
    assert normalise(SHAREGPT) == Conversation(id="share-1", turns=(Turn("system", "Be brief."), *HELLO))


def test_sharegpt_with_canonical_turns_keeps_turn_extras() -> None:
    record = {
        "id": 5,
        "conversations": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "finish_reason": "stop", "unused": None},
        ],
        "sampling": {"temperature": 0.0},
    }
    expected = (Turn("user", "Hi"), Turn("assistant", "Hello!", extra={"finish_reason": "stop"}))
    assert normalise(record) == Conversation(id="5", turns=expected)


def test_ultrachat_takes_prompt_id_and_drops_message_extras() -> None:
    assert normalise(ULTRACHAT) == Conversation(id="abc123", turns=HELLO)


def test_openai_without_id_gets_the_default_id() -> None:
    assert normalise(OPENAI) == Conversation(id="file-7", turns=HELLO)


def test_question_id_is_used_when_there_is_no_id() -> None:
    assert normalise({**OPENAI, "question_id": 81}).id == "81"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (SHAREGPT, "sharegpt"),
        (ULTRACHAT, "ultrachat"),
        (OPENAI, "openai"),
        ({"conversations": [], "messages": []}, "sharegpt"),
    ],
)
def test_detect_format_from_keys(record: dict[str, Any], expected: str) -> None:
    assert detect_format(record) == expected


def test_auto_fails_on_unknown_keys() -> None:
    problem = problem_of({"prompt": "Hi", "response": "Hello"})
    assert problem.kind == "unknown format"
    assert "keys: prompt, response" in problem.reason


def test_explicit_format_requires_its_key() -> None:
    problem = problem_of(OPENAI, data_format="sharegpt")
    assert problem.reason == "unknown format: no 'conversations' list for format 'sharegpt'; keys: messages"


def test_explicit_openai_format_reads_ultrachat_records_too() -> None:
    assert normalise(ULTRACHAT, data_format="openai") == Conversation(id="abc123", turns=HELLO)


def user(text: str) -> dict[str, str]:
    return {"from": "human", "value": text}


def assistant(text: str) -> dict[str, str]:
    return {"from": "gpt", "value": text}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (["not", "a", "dict"], "record is not an object: got a list"),
        ({"conversations": "Hi"}, "malformed record: 'conversations' is a string, not a list"),
        ({"conversations": []}, "malformed record: 'conversations' is empty"),
        ({"conversations": ["Hi"]}, "malformed record: conversations[0] is a string, not an object"),
        ({"conversations": [{"value": "Hi"}]}, "malformed record: conversations[0] has neither 'role' nor 'from'"),
        (
            {"conversations": [user("Hi"), {"from": "gpt", "value": 3}]},
            "malformed record: conversations[1].value is a number, not a string",
        ),
        (
            {"conversations": [user("Hi"), {"from": "bot", "value": "Hello"}]},
            "unknown role: 'bot' in conversations[1] (valid: human, gpt, system, user, assistant)",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "unknown role: 'tool' in messages[0] (valid: system, user, assistant)",
        ),
        ({"conversations": [user("Hi"), assistant("  \n")]}, "empty content: conversations[1]"),
        ({"messages": [{"role": "user", "content": None}]}, "empty content: messages[0]"),
        ({"conversations": [user("Hi"), {"from": "gpt"}]}, "empty content: conversations[1]"),
        (
            {"conversations": [user("Hi"), {"from": "system", "value": "Be brief."}, assistant("Hello")]},
            "system turn not first: conversations[1] is a system turn",
        ),
        (
            {"conversations": [{"from": "system", "value": "Be brief."}, assistant("Hello")]},
            "non-alternating turns: conversations[1] is 'assistant'; the first non-system turn must be 'user'",
        ),
        (
            {"conversations": [user("Hi"), user("Hi again"), assistant("Hello")]},
            "non-alternating turns: conversations[1] is a second 'user' turn in a row",
        ),
        (
            {"conversations": [user("Hi"), assistant("Hello"), assistant("Hello again")]},
            "non-alternating turns: conversations[2] is a second 'assistant' turn in a row",
        ),
        ({"conversations": [user("Hi")]}, "no assistant turn"),
    ],
)
def test_bad_record_reasons(record: Any, reason: str) -> None:
    assert problem_of(record).reason == reason


def test_prompt_only_records_pass_without_require_assistant() -> None:
    record = {"conversations": [user("Hi"), assistant("Hello"), user("Bye")]}
    conversation = normalise(record, require_assistant=False)
    assert [turn.role for turn in conversation.turns] == ["user", "assistant", "user"]
    assert normalise({"conversations": [user("Hi")]}, require_assistant=False).num_assistant_turns == 0


def test_prompt_only_records_may_list_user_turns_in_a_row() -> None:
    record = {"conversations": [user("Summarise this."), user("Now in one line."), assistant("Sure")]}
    conversation = normalise(record, require_assistant=False)
    assert [turn.content for turn in conversation.turns] == ["Summarise this.", "Now in one line.", "Sure"]
    with pytest.raises(RecordProblem, match=r"conversations\[2\] is a second 'assistant' turn in a row"):
        normalise({"conversations": [user("Hi"), assistant("Hello"), assistant("Again")]}, require_assistant=False)
