"""Where models come from: a local directory, or a hub id resolved through huggingface_hub.

Tests never reach the hub; the hub path is the real one users take.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def looks_local(name_or_path: str) -> bool:
    """A name that can only be a local path: not ``org/name`` shaped, absolute or relative
    (``./x``, ``~/x``), or whose first folder exists here (``runs/target`` with ``runs/`` present)."""
    if not HUB_ID.match(name_or_path) or name_or_path.startswith((".", "~")):
        return True
    return Path(name_or_path).parent.is_dir()


def resolve_model_dir(name_or_path: str, *, allow_patterns: list[str] | None = None) -> Path:
    """A local model directory for ``name_or_path`` (downloading from the hub if it is an id)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise Eagle3Error(f"{name_or_path} is a file, not a model directory", hint="pass the folder holding config.json")
    if looks_local(name_or_path):
        raise Eagle3Error(f"no such folder: {name_or_path}", hint="check the path, or pass a hub id like org/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, allow_patterns=allow_patterns))
    except Exception as error:  # hub errors come in many types; all mean "could not fetch"
        raise Eagle3Error(
            f"{name_or_path} is no local folder and could not be fetched from the hub: {error}",
            hint="check the path or the hub id and your network",
        ) from error


@contextmanager
def reading_weights(directory: Path, role: str) -> Iterator[None]:
    """A truncated or corrupt safetensors file (safetensors raises ``SafetensorError``), or a
    read error, becomes one clear error naming the folder and the fix."""
    try:
        yield
    except Eagle3Error:
        raise
    except Exception as error:
        # transformers reports a missing file as an OSError without errno: not this case
        read_failed = isinstance(error, EOFError) or (isinstance(error, OSError) and error.errno is not None)
        if type(error).__name__ != "SafetensorError" and not read_failed:
            raise
        raise Eagle3Error(
            f"the {role}'s weights in {directory} cannot be read ({error})",
            hint=f"a weights file is truncated or corrupt: download or convert the {role} again",
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
