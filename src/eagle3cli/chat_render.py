"""Rendering a conversation to text plus the character spans that are trained on.

Implementation half of :mod:`eagle3cli.chat_template` (read its docstring for the decisions):
each renderer returns a :class:`RenderedChat` — the prompt text exactly as the target model
reads it, and, for every assistant turn, the character span of its content plus its
end-of-turn token. ``qwen3`` and ``hunyuan`` are written out in Python; ``auto`` runs the
tokenizer's own Jinja template and locates each assistant turn by rendering its generation
prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from eagle3cli.data.records import Turn
from eagle3cli.errors import Eagle3Error

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TemplateName = Literal["qwen3", "hunyuan", "auto"]
TEMPLATE_NAMES: tuple[TemplateName, ...] = ("qwen3", "hunyuan", "auto")

QWEN3_IM_START = "<|im_start|>"
QWEN3_IM_END = "<|im_end|>"
QWEN3_END_OF_TEXT = "<|endoftext|>"
QWEN3_ASSISTANT = "<|im_start|>assistant\n"
QWEN3_EMPTY_THINK = "<think>\n\n</think>\n\n"

HUNYUAN_BOS = "<｜hy_begin▁of▁sentence｜>"
HUNYUAN_USER = "<｜hy_User｜>"
HUNYUAN_ASSISTANT = "<｜hy_Assistant｜>"
HUNYUAN_EOS = "<｜hy_place▁holder▁no▁2｜>"
HUNYUAN_SYSTEM_END = "<｜hy_place▁holder▁no▁3｜>"
HUNYUAN_EMPTY_THINK = "<think>\n\n</think>\n"

THINK_END = "</think>"

# Special tokens each family's renderer writes; validate_template checks they are single tokens.
FAMILY_TOKENS: dict[str, tuple[str, ...]] = {
    "qwen3": (QWEN3_IM_START, QWEN3_IM_END, "<think>", THINK_END),
    "hunyuan": (HUNYUAN_BOS, HUNYUAN_USER, HUNYUAN_ASSISTANT, HUNYUAN_EOS, HUNYUAN_SYSTEM_END),
}


@dataclass(frozen=True)
class RenderedChat:
    """Prompt text and the ``[start, end)`` character spans of the trainable parts."""

    text: str
    trainable_spans: tuple[tuple[int, int], ...]


class _ChatTextBuilder:
    """Appends text pieces, remembering where the trainable ones are."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._length = 0
        self._spans: list[tuple[int, int]] = []

    def add(self, text: str) -> None:
        self._pieces.append(text)
        self._length += len(text)

    def add_trainable(self, text: str) -> None:
        self._spans.append((self._length, self._length + len(text)))
        self.add(text)

    def build(self) -> RenderedChat:
        return RenderedChat("".join(self._pieces), tuple(self._spans))


def with_system_prompt(turns: Sequence[Turn], system_prompt: str | None) -> tuple[Turn, ...]:
    """Replace the conversation's system turn by ``system_prompt``, or add it first if none."""
    if system_prompt is None:
        return tuple(turns)
    rest = turns[1:] if turns and turns[0].role == "system" else turns
    return (Turn("system", system_prompt), *rest)


def check_roles(turns: Sequence[Turn]) -> None:
    """Only the first turn may be a system turn."""
    for index, turn in enumerate(turns):
        if turn.role == "system" and index > 0:
            raise Eagle3Error(
                f"turn {index} is a system turn; only the first turn may be one",
                hint="merge the system messages into the first turn",
            )


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Turn],
    *,
    template: TemplateName,
    enable_thinking: bool,
    add_generation_prompt: bool,
) -> RenderedChat:
    """Render ``turns`` with the named template; spans mark each assistant content + end token."""
    check_roles(turns)
    options = {"enable_thinking": enable_thinking, "add_generation_prompt": add_generation_prompt}
    if template == "qwen3":
        return render_qwen3(turns, **options)
    if template == "hunyuan":
        return render_hunyuan(turns, **options)
    if template == "auto":
        return render_auto(tokenizer, turns, **options)
    raise Eagle3Error(f"unknown chat template {template!r}", hint=f"choose one of {', '.join(TEMPLATE_NAMES)}")


def assistant_header(header: str, empty_think: str, content: str, *, enable_thinking: bool) -> str:
    """``header`` plus the family's empty think block when thinking is off and the turn has no
    thinking of its own (Qwen3's test: a ``</think>``) — the text the generation prompt ends with."""
    return header if enable_thinking or THINK_END in content else header + empty_think


def render_qwen3(
    turns: Sequence[Turn], *, enable_thinking: bool, add_generation_prompt: bool
) -> RenderedChat:
    """ChatML as Qwen3 writes it: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per turn."""
    builder = _ChatTextBuilder()
    for turn in turns:
        if turn.role == "assistant":
            builder.add(assistant_header(QWEN3_ASSISTANT, QWEN3_EMPTY_THINK, turn.content, enable_thinking=enable_thinking))
            builder.add_trainable(turn.content + QWEN3_IM_END)
            builder.add("\n")
        else:
            builder.add(f"{QWEN3_IM_START}{turn.role}\n{turn.content}{QWEN3_IM_END}\n")
    if add_generation_prompt:
        builder.add(assistant_header(QWEN3_ASSISTANT, QWEN3_EMPTY_THINK, "", enable_thinking=enable_thinking))
    return builder.build()


def render_hunyuan(
    turns: Sequence[Turn], *, enable_thinking: bool, add_generation_prompt: bool
) -> RenderedChat:
    """Hunyuan dense v1: ``BOS [system <no3>] (<User>user <Assistant>answer <no2>)*``."""
    builder = _ChatTextBuilder()
    builder.add(HUNYUAN_BOS)
    for turn in turns:
        if turn.role == "system":
            builder.add(turn.content + HUNYUAN_SYSTEM_END)
        elif turn.role == "user":
            builder.add(HUNYUAN_USER + turn.content)
        else:
            builder.add(assistant_header(HUNYUAN_ASSISTANT, HUNYUAN_EMPTY_THINK, turn.content, enable_thinking=enable_thinking))
            builder.add_trainable(turn.content + HUNYUAN_EOS)
    if add_generation_prompt:
        builder.add(assistant_header(HUNYUAN_ASSISTANT, HUNYUAN_EMPTY_THINK, "", enable_thinking=enable_thinking))
    return builder.build()


def render_auto(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Turn],
    *,
    enable_thinking: bool,
    add_generation_prompt: bool,
) -> RenderedChat:
    """Render with the tokenizer's own template and locate every assistant turn in the text."""
    text = apply_tokenizer_template(
        tokenizer, turns, enable_thinking=enable_thinking, add_generation_prompt=add_generation_prompt
    )
    special_tokens = special_token_texts(tokenizer)
    spans = tuple(
        _locate_assistant_turn(tokenizer, text, turns, index, enable_thinking, special_tokens)
        for index, turn in enumerate(turns)
        if turn.role == "assistant"
    )
    return RenderedChat(text, spans)


def apply_tokenizer_template(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Turn],
    *,
    enable_thinking: bool,
    add_generation_prompt: bool,
) -> str:
    """The tokenizer's ``chat_template`` rendered to text (``enable_thinking`` passed through)."""
    if not getattr(tokenizer, "chat_template", None):
        raise Eagle3Error(
            "--chat-template auto needs a tokenizer with a chat_template, and this one has none",
            hint="use --chat-template qwen3 or --chat-template hunyuan",
        )
    messages = [{"role": turn.role, "content": turn.content} for turn in turns]
    try:
        return tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
        )
    except Exception as error:  # jinja raises TemplateError and plain exceptions alike
        raise Eagle3Error(f"the tokenizer's chat template failed: {error}") from error


def special_token_texts(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    """The tokenizer's special added tokens, longest first (so the longest match wins)."""
    texts = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return tuple(sorted(texts, key=len, reverse=True))


def _locate_assistant_turn(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    turns: Sequence[Turn],
    index: int,
    enable_thinking: bool,
    special_tokens: Sequence[str],
) -> tuple[int, int]:
    """Span of assistant turn ``index``: right after its generation prompt, through the special
    token that follows its content."""
    prompt = apply_tokenizer_template(
        tokenizer, turns[:index], enable_thinking=enable_thinking, add_generation_prompt=True
    )
    if not text.startswith(prompt):
        raise _unlocatable(index, "its generation prompt is not a prefix of the rendered conversation")
    start = len(prompt)
    content = turns[index].content  # templates may strip its whitespace
    content_end = next((start + len(shown) for shown in (content, content.strip()) if text.startswith(shown, start)), None)
    if content_end is None:
        raise _unlocatable(index, "its content does not follow its generation prompt")
    end_token = next((token for token in special_tokens if text.startswith(token, content_end)), None)
    if end_token is None:
        raise _unlocatable(index, "no special end-of-turn token follows its content")
    return start, content_end + len(end_token)


def _unlocatable(index: int, reason: str) -> Eagle3Error:
    return Eagle3Error(
        f"cannot locate assistant turn {index} in the tokenizer's chat template: {reason}",
        hint="use --chat-template qwen3 or --chat-template hunyuan for those model families",
    )
