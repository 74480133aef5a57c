"""The canonical conversation record every input format is normalised to.

On disk (``.jsonl``) a record is
``{"id": str, "conversations": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``;
sampled shards add optional per-turn and per-record fields (``finish_reason``, sampling
parameters), kept in ``Turn.extra`` / ``Conversation.extra`` and written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: Role
    content: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content, **self.extra}


@dataclass(frozen=True)
class Conversation:
    """A normalised conversation: an id and its turns, system turn (if any) first."""

    id: str
    turns: tuple[Turn, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "conversations": [t.to_json() for t in self.turns], **self.extra}

    @property
    def num_assistant_turns(self) -> int:
        return sum(t.role == "assistant" for t in self.turns)
