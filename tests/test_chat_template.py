"""Chat templates and loss masks, token by token, on tiny tokenizers with real special tokens."""

from __future__ import annotations

import pytest

from eagle3cli.chat_template import (
    end_of_turn_token_ids,
    render_generation_prompt,
    tokenize_conversation,
    validate_template,
)
from eagle3cli.data.records import Conversation, Turn
from eagle3cli.errors import Eagle3Error

from builders.tokenizers import build_llama3_tokenizer

SYSTEM = Turn("system", "You are helpful.")
USER_1 = Turn("user", "Hello")
ANSWER_1 = Turn("assistant", "Hi there! How can I help you today?")
USER_2 = Turn("user", "What is 2 + 2?")
ANSWER_2 = Turn("assistant", "2 + 2 = 4.")
THINKING_ANSWER = Turn("assistant", "<think>\nLet me think step by step.\n</think>\n\nThe answer is 4.")

MULTI_TURN = (SYSTEM, USER_1, ANSWER_1, USER_2, ANSWER_2)
QWEN3_EMPTY_THINK = "<think>\n\n</think>\n\n"
HUNYUAN_EMPTY_THINK = "<think>\n\n</think>\n"


def conversation(*turns: Turn) -> Conversation:
    return Conversation(id="sample", turns=tuple(turns))


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def expected_from_pieces(tokenizer, pieces: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
    """Ids and mask written out piece by piece: (text, 1 if trained on else 0)."""
    input_ids: list[int] = []
    loss_mask: list[int] = []
    for text, trained in pieces:
        ids = encode(tokenizer, text)
        input_ids += ids
        loss_mask += [trained] * len(ids)
    return input_ids, loss_mask


def masked_runs(input_ids: list[int], loss_mask: list[int]) -> list[list[int]]:
    """Consecutive runs of masked ids."""
    runs: list[list[int]] = []
    previous = 0
    for token_id, masked in zip(input_ids, loss_mask):
        if masked and not previous:
            runs.append([])
        if masked:
            runs[-1].append(token_id)
        previous = masked
    return runs


def assert_turns_masked_exactly(tokenizer, tokenized, turns, end_token: str) -> None:
    """The masked text of each assistant turn is its content plus the end token, nothing else."""
    decoded = [tokenizer.decode(run) for run in masked_runs(tokenized.input_ids, tokenized.loss_mask)]
    assert decoded == [turn.content + end_token for turn in turns if turn.role == "assistant"]


def assert_prompt_plus_answer_is_prefix(tokenizer, turns, *, template, enable_thinking) -> None:
    """Training ids start with (generation prompt + content + end token) for every assistant turn."""
    tokenized = tokenize_conversation(
        tokenizer, conversation(*turns), template=template, max_length=4096, enable_thinking=enable_thinking
    )
    end_token_id = end_of_turn_token_ids(tokenizer, template)[0]
    for index, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        prompt = render_generation_prompt(tokenizer, turns[:index], template=template, enable_thinking=enable_thinking)
        answer = encode(tokenizer, turn.content) + [end_token_id]
        length = len(prompt) + len(answer)
        assert tokenized.input_ids[:length] == prompt + answer
        assert tokenized.loss_mask[len(prompt) : length] == [1] * len(answer)
        assert tokenized.loss_mask[length : length + 1] in ([0], [])


# --- qwen3 -------------------------------------------------------------------------------


def test_qwen3_multi_turn_with_system_thinking_off_token_by_token(qwen3_tokenizer):
    tokenized = tokenize_conversation(qwen3_tokenizer, conversation(*MULTI_TURN), template="qwen3", max_length=512)

    expected_ids, expected_mask = expected_from_pieces(
        qwen3_tokenizer,
        [
            ("<|im_start|>system\nYou are helpful.<|im_end|>\n", 0),
            ("<|im_start|>user\nHello<|im_end|>\n", 0),
            ("<|im_start|>assistant\n" + QWEN3_EMPTY_THINK, 0),
            ("Hi there! How can I help you today?<|im_end|>", 1),
            ("\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n", 0),
            ("<|im_start|>assistant\n" + QWEN3_EMPTY_THINK, 0),
            ("2 + 2 = 4.<|im_end|>", 1),
            ("\n", 0),
        ],
    )
    assert tokenized.input_ids == expected_ids
    assert tokenized.loss_mask == expected_mask
    assert tokenized.truncated is False
    assert_turns_masked_exactly(qwen3_tokenizer, tokenized, MULTI_TURN, "<|im_end|>")


@pytest.mark.parametrize(
    ("user", "answer", "enable_thinking"),
    [(USER_1, ANSWER_1, True), (USER_2, THINKING_ANSWER, False), (USER_2, THINKING_ANSWER, True)],
)
def test_qwen3_bare_header_when_thinking_is_on_or_in_the_content(qwen3_tokenizer, user, answer, enable_thinking):
    tokenized = tokenize_conversation(
        qwen3_tokenizer, conversation(user, answer), template="qwen3", max_length=512, enable_thinking=enable_thinking
    )

    expected_ids, expected_mask = expected_from_pieces(
        qwen3_tokenizer,
        [
            (f"<|im_start|>user\n{user.content}<|im_end|>\n<|im_start|>assistant\n", 0),
            (answer.content + "<|im_end|>", 1),
            ("\n", 0),
        ],
    )
    assert (tokenized.input_ids, tokenized.loss_mask) == (expected_ids, expected_mask)
    think_ids = qwen3_tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    masked_ids = [token for token, masked in zip(tokenized.input_ids, tokenized.loss_mask) if masked]
    assert [masked_ids.count(token) for token in think_ids] == [answer.content.count("<think>")] * 2


@pytest.mark.parametrize("enable_thinking", [False, True])
@pytest.mark.parametrize("turns", [(USER_1,), (SYSTEM, USER_1)])
def test_qwen3_generation_prompt_equals_jinja(qwen3_tokenizer, turns, enable_thinking):
    ours = render_generation_prompt(qwen3_tokenizer, turns, template="qwen3", enable_thinking=enable_thinking)
    jinja = qwen3_tokenizer.apply_chat_template(
        _jinja_messages(turns), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )
    assert ours == encode(qwen3_tokenizer, jinja)


def test_qwen3_generation_prompt_after_history_equals_jinja_with_thinking_on(qwen3_tokenizer):
    turns = (SYSTEM, USER_1, ANSWER_1, USER_2)
    ours = render_generation_prompt(qwen3_tokenizer, turns, template="qwen3", enable_thinking=True)
    jinja = qwen3_tokenizer.apply_chat_template(
        _jinja_messages(turns), tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert ours == encode(qwen3_tokenizer, jinja)


def _jinja_messages(turns) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.content} for turn in turns]


@pytest.mark.parametrize(
    ("answer", "enable_thinking"),
    [(ANSWER_1, False), (THINKING_ANSWER, False), (THINKING_ANSWER, True)],
)
def test_qwen3_single_exchange_equals_jinja(qwen3_tokenizer, answer, enable_thinking):
    turns = (SYSTEM, USER_1, answer)
    tokenized = tokenize_conversation(
        qwen3_tokenizer, conversation(*turns), template="qwen3", max_length=512, enable_thinking=enable_thinking
    )
    jinja = qwen3_tokenizer.apply_chat_template(_jinja_messages(turns), tokenize=False, enable_thinking=enable_thinking)
    assert tokenized.input_ids == encode(qwen3_tokenizer, jinja)


def test_qwen3_multi_turn_history_differs_from_jinja_only_by_kept_think_blocks(qwen3_tokenizer):
    tokenized = tokenize_conversation(qwen3_tokenizer, conversation(*MULTI_TURN), template="qwen3", max_length=512)
    jinja = qwen3_tokenizer.apply_chat_template(_jinja_messages(MULTI_TURN), tokenize=False)
    ours = qwen3_tokenizer.decode(tokenized.input_ids)
    first_block = ours.index(QWEN3_EMPTY_THINK)
    assert ours[:first_block] + ours[first_block + len(QWEN3_EMPTY_THINK) :] == jinja


@pytest.mark.parametrize(
    ("turns", "enable_thinking"),
    [
        (MULTI_TURN, False),
        (MULTI_TURN, True),
        ((USER_1, ANSWER_1, USER_2, THINKING_ANSWER), True),
        ((USER_1, THINKING_ANSWER, USER_2, ANSWER_2), True),
    ],
)
def test_qwen3_generation_prompt_plus_answer_is_training_prefix(qwen3_tokenizer, turns, enable_thinking):
    assert_prompt_plus_answer_is_prefix(qwen3_tokenizer, turns, template="qwen3", enable_thinking=enable_thinking)


# --- system prompt -----------------------------------------------------------------------


def test_no_system_prompt_is_injected(qwen3_tokenizer):
    tokenized = tokenize_conversation(qwen3_tokenizer, conversation(USER_1, ANSWER_1), template="qwen3", max_length=512)
    assert qwen3_tokenizer.decode(tokenized.input_ids).startswith("<|im_start|>user\n")


@pytest.mark.parametrize("turns", [(USER_1, ANSWER_1), (SYSTEM, USER_1, ANSWER_1)])
def test_system_prompt_replaces_or_adds_the_system_turn(qwen3_tokenizer, turns):
    tokenized = tokenize_conversation(
        qwen3_tokenizer, conversation(*turns), template="qwen3", max_length=512, system_prompt="Be brief."
    )
    text = qwen3_tokenizer.decode(tokenized.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello")
    assert "You are helpful." not in text


def test_a_system_turn_after_the_first_is_rejected(qwen3_tokenizer):
    with pytest.raises(Eagle3Error, match="turn 2 is a system turn"):
        tokenize_conversation(qwen3_tokenizer, conversation(USER_1, ANSWER_1, SYSTEM), template="qwen3", max_length=64)


# --- hunyuan -----------------------------------------------------------------------------

HY_BOS = "<｜hy_begin▁of▁sentence｜>"
HY_USER = "<｜hy_User｜>"
HY_ASSISTANT = "<｜hy_Assistant｜>"
HY_EOS = "<｜hy_place▁holder▁no▁2｜>"
HY_SYSTEM_END = "<｜hy_place▁holder▁no▁3｜>"


@pytest.mark.parametrize("enable_thinking", [False, True])
def test_hunyuan_multi_turn_token_by_token(hunyuan_tokenizer, enable_thinking):
    tokenized = tokenize_conversation(
        hunyuan_tokenizer,
        conversation(*MULTI_TURN),
        template="hunyuan",
        max_length=512,
        enable_thinking=enable_thinking,
    )

    think = "" if enable_thinking else HUNYUAN_EMPTY_THINK
    expected_ids, expected_mask = expected_from_pieces(
        hunyuan_tokenizer,
        [
            (f"{HY_BOS}You are helpful.{HY_SYSTEM_END}{HY_USER}Hello{HY_ASSISTANT}{think}", 0),
            (f"Hi there! How can I help you today?{HY_EOS}", 1),
            (f"{HY_USER}What is 2 + 2?{HY_ASSISTANT}{think}", 0),
            (f"2 + 2 = 4.{HY_EOS}", 1),
        ],
    )
    assert (tokenized.input_ids, tokenized.loss_mask) == (expected_ids, expected_mask)
    assert_turns_masked_exactly(hunyuan_tokenizer, tokenized, MULTI_TURN, HY_EOS)


def test_hunyuan_thinking_on_equals_jinja(hunyuan_tokenizer):
    tokenized = tokenize_conversation(
        hunyuan_tokenizer, conversation(*MULTI_TURN), template="hunyuan", max_length=512, enable_thinking=True
    )
    jinja = hunyuan_tokenizer.apply_chat_template(_jinja_messages(MULTI_TURN), tokenize=False)
    assert tokenized.input_ids == encode(hunyuan_tokenizer, jinja)


@pytest.mark.parametrize(
    ("turns", "enable_thinking"),
    [((SYSTEM, USER_1), False), ((SYSTEM, USER_1), True), ((SYSTEM, USER_1, ANSWER_1, USER_2), True)],
)
def test_hunyuan_generation_prompt_equals_jinja(hunyuan_tokenizer, turns, enable_thinking):
    ours = render_generation_prompt(hunyuan_tokenizer, turns, template="hunyuan", enable_thinking=enable_thinking)
    jinja = hunyuan_tokenizer.apply_chat_template(
        _jinja_messages(turns), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )
    assert ours == encode(hunyuan_tokenizer, jinja)
    assert jinja.endswith(HY_ASSISTANT + ("" if enable_thinking else HUNYUAN_EMPTY_THINK))


def test_hunyuan_without_system_starts_with_bos_then_user(hunyuan_tokenizer):
    prompt = render_generation_prompt(hunyuan_tokenizer, (USER_1,), template="hunyuan", enable_thinking=True)
    assert prompt == encode(hunyuan_tokenizer, f"{HY_BOS}{HY_USER}Hello{HY_ASSISTANT}")


@pytest.mark.parametrize("enable_thinking", [False, True])
def test_hunyuan_generation_prompt_plus_answer_is_training_prefix(hunyuan_tokenizer, enable_thinking):
    assert_prompt_plus_answer_is_prefix(
        hunyuan_tokenizer, MULTI_TURN, template="hunyuan", enable_thinking=enable_thinking
    )


# --- auto (the tokenizer's own template) -------------------------------------------------

LLAMA_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def test_auto_llama3_token_by_token(llama_tokenizer):
    tokenized = tokenize_conversation(llama_tokenizer, conversation(*MULTI_TURN), template="auto", max_length=512)

    expected_ids, expected_mask = expected_from_pieces(
        llama_tokenizer,
        [
            ("<|begin_of_text|>" + LLAMA_HEADER.format(role="system") + "You are helpful.<|eot_id|>", 0),
            (LLAMA_HEADER.format(role="user") + "Hello<|eot_id|>" + LLAMA_HEADER.format(role="assistant"), 0),
            ("Hi there! How can I help you today?<|eot_id|>", 1),
            (LLAMA_HEADER.format(role="user") + "What is 2 + 2?<|eot_id|>" + LLAMA_HEADER.format(role="assistant"), 0),
            ("2 + 2 = 4.<|eot_id|>", 1),
        ],
    )
    assert (tokenized.input_ids, tokenized.loss_mask) == (expected_ids, expected_mask)
    assert_turns_masked_exactly(llama_tokenizer, tokenized, MULTI_TURN, "<|eot_id|>")


def test_auto_llama3_masks_the_content_as_the_template_trims_it(llama_tokenizer):
    padded = Turn("assistant", "  Hi there!\n")
    tokenized = tokenize_conversation(llama_tokenizer, conversation(USER_1, padded), template="auto", max_length=512)
    assert [llama_tokenizer.decode(run) for run in masked_runs(tokenized.input_ids, tokenized.loss_mask)] == [
        "Hi there!<|eot_id|>"
    ]


def test_auto_llama3_generation_prompt_plus_answer_is_training_prefix(llama_tokenizer):
    assert_prompt_plus_answer_is_prefix(llama_tokenizer, MULTI_TURN, template="auto", enable_thinking=False)


def test_auto_on_qwen3_single_exchange_equals_qwen3(qwen3_tokenizer):
    turns = conversation(SYSTEM, USER_1, ANSWER_1)
    auto = tokenize_conversation(qwen3_tokenizer, turns, template="auto", max_length=512)
    python = tokenize_conversation(qwen3_tokenizer, turns, template="qwen3", max_length=512)
    assert auto == python


def test_auto_fails_clearly_where_the_template_rewrites_history(qwen3_tokenizer):
    with pytest.raises(Eagle3Error, match="cannot locate assistant turn 2") as raised:
        tokenize_conversation(qwen3_tokenizer, conversation(*MULTI_TURN), template="auto", max_length=512)
    assert "--chat-template qwen3" in str(raised.value)
    with pytest.raises(Eagle3Error, match="cannot locate assistant turn"):
        validate_template(qwen3_tokenizer, "auto")


def test_auto_without_chat_template_fails_clearly():
    tokenizer = build_llama3_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(Eagle3Error, match="has none"):
        validate_template(tokenizer, "auto")
    with pytest.raises(Eagle3Error, match="has none"):
        render_generation_prompt(tokenizer, (USER_1,), template="auto")


# --- truncation and mask invariants ------------------------------------------------------


TOKENIZER_FIXTURES = {"qwen3": "qwen3_tokenizer", "hunyuan": "hunyuan_tokenizer", "auto": "llama_tokenizer"}


@pytest.mark.parametrize("template", ["qwen3", "hunyuan", "auto"])
def test_truncation_inside_an_assistant_turn_keeps_the_mask_aligned(request, template):
    tokenizer = request.getfixturevalue(TOKENIZER_FIXTURES[template])
    full = tokenize_conversation(tokenizer, conversation(*MULTI_TURN), template=template, max_length=4096)
    inside_last_answer = len(full.input_ids) - 3
    assert full.loss_mask[inside_last_answer - 1] == 1

    truncated = tokenize_conversation(
        tokenizer, conversation(*MULTI_TURN), template=template, max_length=inside_last_answer
    )
    assert truncated.truncated is True
    assert truncated.input_ids == full.input_ids[:inside_last_answer]
    assert truncated.loss_mask == full.loss_mask[:inside_last_answer]
    exact = tokenize_conversation(
        tokenizer, conversation(*MULTI_TURN), template=template, max_length=len(full.input_ids)
    )
    assert exact == full and exact.truncated is False


@pytest.mark.parametrize(
    ("tokenizer_fixture", "template", "header_tokens"),
    [
        ("qwen3_tokenizer", "qwen3", ["<|im_start|>"]),
        ("hunyuan_tokenizer", "hunyuan", [HY_BOS, HY_USER, HY_ASSISTANT, HY_SYSTEM_END]),
        ("llama_tokenizer", "auto", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>"]),
    ],
)
def test_end_token_is_followed_by_an_unmasked_token_and_headers_are_never_masked(
    request, tokenizer_fixture, template, header_tokens
):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    turns = MULTI_TURN + (Turn("user", "Thanks"),)
    tokenized = tokenize_conversation(tokenizer, conversation(*turns), template=template, max_length=512)
    end_token_id = end_of_turn_token_ids(tokenizer, template)[0]
    header_ids = set(tokenizer.convert_tokens_to_ids(header_tokens))

    ends = [i for i, token in enumerate(tokenized.input_ids) if token == end_token_id and tokenized.loss_mask[i]]
    assert len(ends) == 2
    assert all(tokenized.loss_mask[i + 1] == 0 for i in ends)
    assert all(not (token in header_ids and masked) for token, masked in zip(tokenized.input_ids, tokenized.loss_mask))
    assert tokenized.loss_mask[0] == 0 and tokenized.loss_mask[-1] == 0


def test_loss_mask_is_binary_and_aligned(qwen3_tokenizer):
    tokenized = tokenize_conversation(qwen3_tokenizer, conversation(*MULTI_TURN), template="qwen3", max_length=512)
    assert len(tokenized.loss_mask) == len(tokenized.input_ids)
    assert set(tokenized.loss_mask) == {0, 1}


def test_multibyte_content_is_masked_exactly(qwen3_tokenizer):
    turns = (USER_1, Turn("assistant", "你好，世界。Café ☕"))
    tokenized = tokenize_conversation(qwen3_tokenizer, conversation(*turns), template="qwen3", max_length=512)
    assert_turns_masked_exactly(qwen3_tokenizer, tokenized, turns, "<|im_end|>")


# --- stop tokens and validation ----------------------------------------------------------


def test_end_of_turn_token_ids(qwen3_tokenizer, hunyuan_tokenizer, llama_tokenizer):
    assert end_of_turn_token_ids(qwen3_tokenizer, "qwen3") == qwen3_tokenizer.convert_tokens_to_ids(
        ["<|im_end|>", "<|endoftext|>"]
    )
    assert end_of_turn_token_ids(hunyuan_tokenizer, "hunyuan") == [hunyuan_tokenizer.convert_tokens_to_ids(HY_EOS)]
    assert end_of_turn_token_ids(llama_tokenizer, "auto") == [llama_tokenizer.convert_tokens_to_ids("<|eot_id|>")]


def test_validate_template_accepts_matching_tokenizers(qwen3_tokenizer, hunyuan_tokenizer, llama_tokenizer):
    validate_template(qwen3_tokenizer, "qwen3")
    validate_template(hunyuan_tokenizer, "hunyuan")
    validate_template(llama_tokenizer, "auto")
    validate_template(hunyuan_tokenizer, "auto", enable_thinking=True)


def test_validate_auto_fails_where_thinking_off_changes_the_header(hunyuan_tokenizer):
    # Hunyuan's Jinja writes the empty think block into the generation prompt only.
    with pytest.raises(Eagle3Error, match="cannot locate assistant turn 1"):
        validate_template(hunyuan_tokenizer, "auto", enable_thinking=False)


@pytest.mark.parametrize(
    ("tokenizer_fixture", "template", "missing", "suggestion"),
    [
        ("hunyuan_tokenizer", "qwen3", "<|im_start|>", "--chat-template hunyuan"),
        ("qwen3_tokenizer", "hunyuan", HY_BOS, "--chat-template qwen3"),
        ("llama_tokenizer", "qwen3", "<|im_start|>", "--chat-template auto"),
    ],
)
def test_validate_template_names_the_missing_token_and_the_fix(
    request, tokenizer_fixture, template, missing, suggestion
):
    tokenizer = request.getfixturevalue(tokenizer_fixture)
    with pytest.raises(Eagle3Error) as raised:
        validate_template(tokenizer, template)
    assert missing in raised.value.message
    assert suggestion in raised.value.hint


def test_unknown_template_is_rejected(qwen3_tokenizer):
    with pytest.raises(Eagle3Error, match="unknown chat template"):
        tokenize_conversation(qwen3_tokenizer, conversation(USER_1, ANSWER_1), template="chatml", max_length=64)
