"""Where models come from: a local directory, or a hub id resolved through huggingface_hub.

Tests never reach the hub; the hub path is the real one users take.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_model_dir(name_or_path: str, *, allow_patterns: list[str] | None = None) -> Path:
    """A local model directory for ``name_or_path`` (downloading from the hub if it is an id)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise Eagle3Error(f"{name_or_path} is a file, not a model directory", hint="pass the folder holding config.json")
    if not HUB_ID.match(name_or_path):
        raise Eagle3Error(f"model {name_or_path} not found", hint="pass an existing directory or a hub id like org/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, allow_patterns=allow_patterns))
    except Exception as error:  # hub errors come in many types; all mean "could not fetch"
        raise Eagle3Error(
            f"could not fetch {name_or_path} from the hub: {error}",
            hint="check the id and your network, or pass a local directory",
        ) from error


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer from a local directory or hub id, with a clear error on failure."""
    from transformers import AutoTokenizer

    directory = resolve_model_dir(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise Eagle3Error(
            f"could not load a tokenizer from {directory}: {error}",
            hint="the folder needs tokenizer.json or tokenizer_config.json (or pass --trust-remote-code)",
        ) from error
