"""Regenerate one conversation turn by turn with the target.

The system turn is kept; every user turn is sent with the *regenerated* history before it
and answered by the server; the dataset's own assistant turns are discarded. Each new
assistant turn carries its ``finish_reason``; the record carries the sampling parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from eagle3cli.data.records import Conversation, Turn
from eagle3cli.serving.client import ChatClient, RequestFailed, SamplingParams


class RecordFailed(Exception):
    """A record that cannot be regenerated; ``reason`` names the turn and the cause."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Regenerated:
    """A regenerated conversation, its new tokens, and whether an answer hit ``max_tokens``."""

    conversation: Conversation
    num_tokens: int
    truncated: bool


async def regenerate(
    conversation: Conversation, client: ChatClient, params: SamplingParams, *, stop_when_truncated: bool = False
) -> Regenerated:
    """Answer every user turn of ``conversation`` in order, replaying the regenerated history.

    With ``stop_when_truncated`` the first truncated answer ends the record early (it is
    going to be dropped). Raises :class:`RecordFailed` (and ``ServersDown`` from the pool).
    """
    turns: list[Turn] = []
    num_tokens = 0
    truncated = False
    for turn in conversation.turns:
        if turn.role == "assistant":
            continue
        turns.append(Turn(role=turn.role, content=turn.content))
        if turn.role != "user":
            continue
        where = f"conversations[{len(turns)}]"
        try:
            reply = await client.complete([{"role": turn.role, "content": turn.content} for turn in turns], params)
        except RequestFailed as failure:
            raise RecordFailed(f"{where}: {failure.reason}") from None
        if not reply.content.strip():
            raise RecordFailed(f"{where}: empty reply (finish_reason {reply.finish_reason!r})")
        turns.append(Turn(role="assistant", content=reply.content, extra={"finish_reason": reply.finish_reason}))
        num_tokens += reply.num_tokens
        truncated = truncated or reply.finish_reason == "length"
        if truncated and stop_when_truncated:
            break
    if not any(turn.role == "user" for turn in turns):
        raise RecordFailed("no user turn to answer")
    record = Conversation(id=conversation.id, turns=tuple(turns), extra={"sampling_params": params.to_json()})
    return Regenerated(conversation=record, num_tokens=num_tokens, truncated=truncated)
