"""The target as a command sees it, resolved once: its folder (a hub id is downloaded), its
text-model config and that file's sha256, and its tokenizer checked against the chat settings.

dump, training, bench and the vLLM backends take a :class:`TargetSpec`; none of them resolves
the folder, reads the config or validates the template on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle3cli.fileio import read_json_object
from eagle3cli.target.hub import load_tokenizer, resolve_model_dir


@dataclass(frozen=True)
class TargetSpec:
    """``name``: as the user gave it (hub id or path); ``config``: the text model's config
    (a multimodal target's ``text_config``); ``tokenizer``: None when the command needs none."""

    name: str
    directory: Path
    config: dict[str, Any]
    config_sha256: str
    tokenizer: Any = None

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])


def read_config_json(directory: Path) -> tuple[dict[str, Any], str]:
    """``directory/config.json`` as a JSON object, and the file's sha256; one clear error otherwise."""
    data, raw = read_json_object(Path(directory) / "config.json", "pass the target's folder (it holds config.json)")
    return data, hashlib.sha256(raw).hexdigest()


def text_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """The text model's part of a config: a multimodal target's ``text_config`` (with the
    top-level ``tie_word_embeddings``), or the config itself."""
    nested = data.get("text_config")
    if "hidden_size" not in data and isinstance(nested, Mapping):
        return {"tie_word_embeddings": data.get("tie_word_embeddings", False), **nested}
    return dict(data)


def read_target_config(model: str | Path) -> dict[str, Any]:
    """The target's text-model config, from a folder or hub id."""
    return text_config(read_config_json(resolve_model_dir(str(model)))[0])


def resolve_target(
    name: str | Path,
    *,
    tokenizer: bool = True,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
    enable_thinking: bool = False,
    generation_only: bool = False,
    allow_patterns: list[str] | None = None,
) -> TargetSpec:
    """Resolve the target once: folder, config, config hash and (``tokenizer=True``) its
    tokenizer. With ``chat_template``, the tokenizer must render it (with ``enable_thinking``;
    ``generation_only``: only generation prompts are rendered, as the bench does)."""
    directory = resolve_model_dir(str(name), allow_patterns=allow_patterns)
    data, sha256 = read_config_json(directory)
    loaded = None
    if tokenizer:
        loaded = load_tokenizer(str(directory), trust_remote_code=trust_remote_code)
        if chat_template is not None:
            from eagle3cli.chat_template import validate_template

            validate_template(loaded, chat_template, enable_thinking=enable_thinking, generation_only=generation_only)
    return TargetSpec(str(name), directory, text_config(data), sha256, loaded)
