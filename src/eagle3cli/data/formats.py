"""Normalise one chat record (ShareGPT, UltraChat, OpenAI ``messages``) to a :class:`Conversation`.

Format detection (``data_format="auto"``) is per record, from its keys:
``conversations`` → ShareGPT (its turns may use ``from``/``value`` or the canonical
``role``/``content``), ``messages`` with ``prompt_id`` → UltraChat, ``messages`` → OpenAI.

A record that cannot be normalised raises :class:`RecordProblem`; the reader adds the file
and line and applies the bad-record policy. Turn positions in messages are written as the
record's own list path (``conversations[2]``, 0-based), so they can be found in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from eagle3cli.config import DataFormat
from eagle3cli.data.records import ROLES, Conversation, Role, Turn

ReasonKind = Literal[
    "invalid JSON",
    "record is not an object",
    "unknown format",
    "malformed record",
    "unknown role",
    "empty content",
    "system turn not first",
    "non-alternating turns",
    "no assistant turn",
]

SHAREGPT_ROLES: dict[str, Role] = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}
ID_KEYS: tuple[str, ...] = ("id", "prompt_id", "question_id")
FORMAT_TURNS_KEY: dict[str, str] = {"sharegpt": "conversations", "ultrachat": "messages", "openai": "messages"}


class RecordProblem(Exception):
    """Why one record cannot be normalised; ``kind`` groups problems for skip counts."""

    def __init__(self, kind: ReasonKind, detail: str | None = None) -> None:
        self.kind = kind
        self.reason = kind if detail is None else f"{kind}: {detail}"
        super().__init__(self.reason)


def detect_format(record: Mapping[str, Any]) -> str:
    """Return ``"sharegpt"``, ``"ultrachat"`` or ``"openai"`` from a record's keys."""
    if "conversations" in record:
        return "sharegpt"
    if "messages" in record:
        return "ultrachat" if "prompt_id" in record else "openai"
    keys = ", ".join(map(str, record)) or "none"
    raise RecordProblem(
        "unknown format",
        f"expected a 'conversations' (sharegpt) or 'messages' (ultrachat/openai) list; keys: {keys}",
    )


def normalise_record(
    record: Any,
    *,
    data_format: DataFormat,
    default_id: str,
    require_assistant: bool,
) -> Conversation:
    """Normalise one decoded record to a :class:`Conversation` or raise :class:`RecordProblem`.

    ``default_id`` is used when the record has no ``id``/``prompt_id``/``question_id``.
    Per-turn extra keys are kept only for canonical ``role``/``content`` turns inside
    ``conversations``; every other extra key is dropped.
    """
    if not isinstance(record, Mapping):
        raise RecordProblem("record is not an object", f"got {_json_type(record)}")
    record_format = detect_format(record) if data_format == "auto" else data_format
    turns_key = FORMAT_TURNS_KEY[record_format]
    if turns_key not in record:
        keys = ", ".join(map(str, record)) or "none"
        raise RecordProblem("unknown format", f"no '{turns_key}' list for format '{record_format}'; keys: {keys}")
    turns = _read_turns(record[turns_key], turns_key)
    check_turn_order(turns, turns_key, require_assistant=require_assistant)
    return Conversation(id=_record_id(record, default_id), turns=turns)


def check_turn_order(turns: tuple[Turn, ...], turns_key: str, *, require_assistant: bool) -> None:
    """Check system-first, user-first and strict user/assistant alternation.

    Without ``require_assistant`` (prompts for ``eagle3 sample``, which answers each user turn
    in order) user turns may also follow each other: ``[user, user]`` is a two-turn prompt.
    """
    previous: Role | None = None
    for index, turn in enumerate(turns):
        where = f"{turns_key}[{index}]"
        if turn.role == "system":
            if index != 0:
                raise RecordProblem("system turn not first", f"{where} is a system turn")
            continue
        if previous is None and turn.role != "user":
            detail = f"{where} is '{turn.role}'; the first non-system turn must be 'user'"
            raise RecordProblem("non-alternating turns", detail)
        if previous == turn.role and (require_assistant or turn.role == "assistant"):
            raise RecordProblem("non-alternating turns", f"{where} is a second '{turn.role}' turn in a row")
        previous = turn.role
    if require_assistant and not any(turn.role == "assistant" for turn in turns):
        raise RecordProblem("no assistant turn")


def _read_turns(raw_turns: Any, turns_key: str) -> tuple[Turn, ...]:
    if not isinstance(raw_turns, list):
        raise RecordProblem("malformed record", f"'{turns_key}' is {_json_type(raw_turns)}, not a list")
    if not raw_turns:
        raise RecordProblem("malformed record", f"'{turns_key}' is empty")
    keep_extra = turns_key == "conversations"
    return tuple(_read_turn(raw, f"{turns_key}[{index}]", keep_extra=keep_extra) for index, raw in enumerate(raw_turns))


def _read_turn(raw: Any, where: str, *, keep_extra: bool) -> Turn:
    """Read a ``from``/``value`` (ShareGPT) or ``role``/``content`` turn."""
    if not isinstance(raw, Mapping):
        raise RecordProblem("malformed record", f"{where} is {_json_type(raw)}, not an object")
    if raw.get("from") is not None:
        role = _map_role(raw["from"], SHAREGPT_ROLES, where)
        return Turn(role=role, content=_content(raw, "value", where))
    if raw.get("role") is None:
        raise RecordProblem("malformed record", f"{where} has neither 'role' nor 'from'")
    role = _map_role(raw["role"], {role: role for role in ROLES}, where)
    content = _content(raw, "content", where)
    extra = {key: value for key, value in raw.items() if key not in ("role", "content") and value is not None}
    return Turn(role=role, content=content, extra=extra if keep_extra else {})


def _map_role(name: Any, roles: Mapping[str, Role], where: str) -> Role:
    if name not in roles:
        valid = ", ".join(roles)
        raise RecordProblem("unknown role", f"{name!r} in {where} (valid: {valid})")
    return roles[name]


def _content(raw: Mapping[str, Any], key: str, where: str) -> str:
    content = raw.get(key)
    if content is not None and not isinstance(content, str):
        raise RecordProblem("malformed record", f"{where}.{key} is {_json_type(content)}, not a string")
    if content is None or not content.strip():
        raise RecordProblem("empty content", f"{where}")
    return content


def _record_id(record: Mapping[str, Any], default_id: str) -> str:
    for key in ID_KEYS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            continue
        return str(value)
    return default_id


def _json_type(value: Any) -> str:
    """Name a Python value by its JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, Mapping) else type(value).__name__
