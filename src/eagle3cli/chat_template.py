"""Chat templates and assistant-only loss masks.

One mechanism serves the three templates: a conversation is rendered to text together with the
character spans of the trainable parts (:mod:`eagle3cli.chat_render`), the text is tokenized
once (``add_special_tokens=False``, offsets on) and a token is in the loss mask when it starts
inside a span. A span is exactly one assistant turn's content plus its end-of-turn token
(``<|im_end|>`` for qwen3, ``<｜hy_place▁holder▁no▁2｜>`` for hunyuan, the special token right
after the content for auto) — never a header token, never the newline or the next turn after
it. A token BPE merges across the header/content boundary (the header's ``\\n\\n`` with a
content's leading ``\\n``) starts in the header and stays 0. Nothing is padded here; padding
(mask 0) is the collator's job.

Templates
    ``qwen3``   ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per turn, no BOS.
    ``hunyuan`` Hunyuan dense v1 (HunYuanDenseV1: tencent/Hunyuan-{0.5,1.8,4,7}B-Instruct,
                whose Jinja emits the assistant header with the user turn — same text):
                ``<｜hy_begin▁of▁sentence｜>[{system}<｜hy_place▁holder▁no▁3｜>]``, then
                ``<｜hy_User｜>{user}`` and ``<｜hy_Assistant｜>{answer}<｜hy_place▁holder▁no▁2｜>``
                per turn; thinking off adds ``<think>\\n\\n</think>\\n`` to the assistant header.
    ``auto``    the tokenizer's own ``chat_template``; each assistant turn is located by
                rendering the turns before it with ``add_generation_prompt=True``. A template
                that rewrites earlier turns (Qwen3's own drops old reasoning) cannot be located
                for every turn and fails with an :class:`Eagle3Error` naming the turn.

Each assistant turn is rendered as the generation prompt that produced it, then its content and
its end-of-turn token, so ``render_generation_prompt(turns[:k]) + content + end`` is a prefix of
the training ids for every assistant turn ``k`` — training sees what the target saw at inference.

The empty think block (qwen3 ``<think>\\n\\n</think>\\n\\n``, hunyuan ``<think>\\n\\n</think>\\n``):
with ``enable_thinking=False`` and no thinking in the turn's content it belongs to the assistant
header — exactly where the family's template puts it in the generation prompt, and what
``sample`` gets with ``chat_template_kwargs={"enable_thinking": false}`` — so it is NOT masked.
Thinking the data does carry (``<think>...</think>`` in the content) is content: it is masked
and no empty block is added, whatever ``enable_thinking`` says. With ``enable_thinking=True``
the header is bare. Where this differs from the families' Jinja: Qwen3's template keeps the
think block only on assistant turns after the last user message (it drops reasoning from
earlier turns), and Hunyuan's writes the empty block only into the generation prompt; here
every assistant turn keeps the header it was generated with. For a single exchange the qwen3
rendering equals Qwen3's Jinja rendering.

``system_prompt`` replaces the conversation's system turn, or is added as the first turn when
it has none; without it no system prompt is injected. Truncation keeps the first ``max_length``
tokens of ids and mask alike and sets ``truncated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eagle3cli.chat_render import (
    FAMILY_TOKENS, HUNYUAN_EOS, QWEN3_END_OF_TEXT, QWEN3_IM_END, TemplateName, apply_tokenizer_template, render_chat, with_system_prompt,
)
from eagle3cli.data.records import Conversation, Turn
from eagle3cli.errors import Eagle3Error

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "TemplateName",
    "TokenizedConversation",
    "end_of_turn_token_ids",
    "render_generation_prompt",
    "tokenize_conversation",
    "validate_template",
]

# The conversation validate_template and end_of_turn_token_ids render with ``auto``.
_PROBE_TURNS = (
    Turn("user", "Hello"),
    Turn("assistant", "Hi there"),
    Turn("user", "How are you?"),
    Turn("assistant", "Fine, thanks."),
)


@dataclass(frozen=True)
class TokenizedConversation:
    """Token ids of a rendered conversation and its 0/1 assistant-only loss mask (same length)."""

    input_ids: list[int]
    loss_mask: list[int]
    truncated: bool


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation,
    *,
    template: TemplateName,
    max_length: int,
    enable_thinking: bool = False,
    system_prompt: str | None = None,
) -> TokenizedConversation:
    """Tokenize ``conversation`` with ``template``; the mask covers each assistant turn's content
    and end-of-turn token. Call :func:`validate_template` once before a data set."""
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    turns = with_system_prompt(conversation.turns, system_prompt)
    rendered = render_chat(tokenizer, turns, template=template, enable_thinking=enable_thinking, add_generation_prompt=False)
    _require_fast_tokenizer(tokenizer)
    encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids, loss_mask = list(encoding["input_ids"]), _mask_from_offsets(encoding["offset_mapping"], rendered.trainable_spans)
    return TokenizedConversation(input_ids[:max_length], loss_mask[:max_length], truncated=len(input_ids) > max_length)


def render_generation_prompt(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[Turn],
    *,
    template: TemplateName,
    enable_thinking: bool = False,
    system_prompt: str | None = None,
) -> list[int]:
    """Prompt ids for the next assistant turn: ``turns`` followed by the assistant header
    (``add_generation_prompt=True``; for qwen3 with thinking off it ends with the empty think block)."""
    turns = with_system_prompt(turns, system_prompt)
    if template == "auto":  # the text alone: earlier answers need not be locatable to be context
        text = apply_tokenizer_template(tokenizer, turns, enable_thinking=enable_thinking, add_generation_prompt=True)
    else:
        text = render_chat(tokenizer, turns, template=template, enable_thinking=enable_thinking, add_generation_prompt=True).text
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def end_of_turn_token_ids(tokenizer: PreTrainedTokenizerBase, template: TemplateName) -> list[int]:
    """Stop tokens: the template's end-of-turn token first, then the tokenizer's EOS if different
    (qwen3 also stops at ``<|endoftext|>``, as Qwen3's generation config does)."""
    if template == "qwen3":
        names = [QWEN3_IM_END, QWEN3_END_OF_TEXT]
    elif template == "hunyuan":
        names = [HUNYUAN_EOS]
    else:
        names = [_auto_end_of_turn_token(tokenizer)]
    ids = [_single_token_id(tokenizer, name) for name in names]
    ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(token_id for token_id in ids if token_id is not None))


def validate_template(
    tokenizer: PreTrainedTokenizerBase, template: TemplateName, *, enable_thinking: bool = False, generation_only: bool = False
) -> None:
    """Fail early, with the fix, when ``tokenizer`` cannot be used with ``template``: a special
    token the family writes is not a single token, or (auto) the tokenizer has no chat_template
    or the assistant turns of a two-exchange probe cannot be located with ``enable_thinking``
    (loss masks need them). ``generation_only`` (bench) asks for less with auto: a generation
    prompt and an end-of-turn token after an answer."""
    _require_fast_tokenizer(tokenizer)
    if template == "auto" and generation_only:
        _auto_end_of_turn_token(tokenizer)
    elif template == "auto":
        render_chat(tokenizer, _PROBE_TURNS, template="auto", enable_thinking=enable_thinking, add_generation_prompt=False)
    else:
        missing = [token for token in FAMILY_TOKENS[template] if _single_token_id(tokenizer, token) is None]
        if missing:
            raise Eagle3Error(
                f"the tokenizer has no single token for {missing[0]!r}, which the {template} chat template needs",
                hint=_template_suggestion(tokenizer, template),
            )


def _require_fast_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise Eagle3Error(
            "loss masks need a fast tokenizer (offset mapping), and this one is a slow one",
            hint="load the tokenizer with use_fast=True or ship a tokenizer.json",
        )


def _mask_from_offsets(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for a non-empty token whose first character lies inside a span, else 0.

    A token that begins in the header and runs into the content stays 0 (never a header token).
    """
    loss_mask = []
    span_index = 0
    for start, end in offsets:
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        inside = span_index < len(spans) and spans[span_index][0] <= start < end
        loss_mask.append(int(inside))
    return loss_mask


def _single_token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    """The id of ``token`` when the tokenizer knows it as one token, else None."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return token_id if tokenizer.encode(token, add_special_tokens=False) == [token_id] else None


def _auto_end_of_turn_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """The special token the tokenizer's template writes right after an assistant's content."""
    rendered = render_chat(
        tokenizer, _PROBE_TURNS[:2], template="auto", enable_thinking=False, add_generation_prompt=False
    )
    start, end = rendered.trainable_spans[0]
    return rendered.text[start + len(_PROBE_TURNS[1].content) : end]


def _template_suggestion(tokenizer: PreTrainedTokenizerBase, template: TemplateName) -> str:
    for family, tokens in FAMILY_TOKENS.items():
        if family != template and all(_single_token_id(tokenizer, token) is not None for token in tokens):
            return f"this looks like a {family} tokenizer: use --chat-template {family}"
    if getattr(tokenizer, "chat_template", None):
        return "use --chat-template auto to use the tokenizer's own chat template"
    return "check that the tokenizer is the target model's"
