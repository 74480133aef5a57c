"""Conversations → token ids and assistant-only loss masks, the one way every stage does it
(``data check``, ``dump-hidden``, ``train online``): the chat settings are passed whole."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from eagle3cli.config import ChatSettings
from eagle3cli.data.records import Conversation


@dataclass(frozen=True)
class TokenizedSample:
    """One conversation tokenised: its position in the data (reader order), its record id, the
    ids and the 0/1 loss mask (same length), and whether ``max_length`` cut it."""

    sample_index: int
    sample_id: str
    input_ids: list[int]
    loss_mask: list[int]
    truncated: bool

    @property
    def has_loss(self) -> bool:
        return any(self.loss_mask)


def tokenize_records(records: Iterable[tuple[int, Conversation]], tokenizer: Any, chat: ChatSettings) -> Iterator[TokenizedSample]:
    """Each ``(sample_index, conversation)`` rendered with ``chat``'s template, options and token
    budget (call :func:`~eagle3cli.chat_template.validate_template` once before)."""
    from eagle3cli.chat_template import tokenize_conversation

    for sample_index, conversation in records:
        tokenized = tokenize_conversation(
            tokenizer, conversation, template=chat.chat_template, max_length=chat.max_length,
            enable_thinking=chat.enable_thinking, system_prompt=chat.system_prompt,
        )
        yield TokenizedSample(sample_index, conversation.id, tokenized.input_ids, tokenized.loss_mask, tokenized.truncated)
