"""Session-scoped tiny targets saved as HF directories (model + the family's tokenizer).

``qwen3_target_dir``, ``llama_target_dir`` and ``hunyuan_target_dir`` hold a 4-layer,
hidden-64, float32 random model sized to the family's tiny tokenizer; ``tiny_target_dir``
is parametrised over the three families.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from builders.models import FAMILIES, save_tiny_target


def _save_target(factory: pytest.TempPathFactory, family: str, tokenizer_dir: Path) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return save_tiny_target(factory.mktemp(f"{family}_target"), family, tokenizer)


@pytest.fixture(scope="session")
def qwen3_target_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_tokenizer_dir: Path) -> Path:
    return _save_target(tmp_path_factory, "qwen3", qwen3_tokenizer_dir)


@pytest.fixture(scope="session")
def llama_target_dir(tmp_path_factory: pytest.TempPathFactory, llama_tokenizer_dir: Path) -> Path:
    return _save_target(tmp_path_factory, "llama", llama_tokenizer_dir)


@pytest.fixture(scope="session")
def hunyuan_target_dir(tmp_path_factory: pytest.TempPathFactory, hunyuan_tokenizer_dir: Path) -> Path:
    return _save_target(tmp_path_factory, "hunyuan", hunyuan_tokenizer_dir)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_target_dir(request: pytest.FixtureRequest) -> Path:
    """Each family's tiny target directory in turn."""
    return request.getfixturevalue(f"{request.param}_target_dir")
