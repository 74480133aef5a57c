"""Single tensors of the target (``lm_head``, ``embed_tokens``) read straight from its safetensors.

Offline training needs the target's ``lm_head`` and the draft needs its embedding; loading the
whole model for two matrices would cost its full size in memory. ``safe_open`` reads one
tensor from a single ``model.safetensors`` or from the shard that
``model.safetensors.index.json`` names.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from eagle3cli.errors import Eagle3Error
from eagle3cli.target.hub import reading_weights, resolve_model_dir

if TYPE_CHECKING:
    import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_EMBED_KEY = "model.embed_tokens.weight"
DEFAULT_LM_HEAD_KEY = "lm_head.weight"
NUM_KEYS_SHOWN = 8


def suggest_key(name: str, candidates: list[str]) -> str | None:
    """The candidate ``name`` most likely meant: a suffix match either way, else the closest spelling."""
    suffix_matches = [key for key in candidates if key.endswith("." + name) or name.endswith("." + key)]
    if suffix_matches:
        return min(suffix_matches, key=len)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def safetensors_key_map(model_dir: Path) -> dict[str, Path]:
    """Every tensor key of a model folder → the safetensors file holding it."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise Eagle3Error(f"{index} is not a safetensors index (no weight_map): {error}") from error
        return {key: model_dir / filename for key, filename in weight_map.items()}
    single = model_dir / SINGLE_FILE
    if single.is_file():
        from safetensors import safe_open

        with reading_weights(model_dir, "target"), safe_open(single, framework="pt") as handle:
            return {key: single for key in handle.keys()}
    raise Eagle3Error(
        f"{model_dir} has neither {SINGLE_FILE} nor {INDEX_FILE}",
        hint="the target's weights must be in safetensors format",
    )


def missing_key_error(key: str, keys: list[str], model_dir: Path, option: str | None) -> Eagle3Error:
    """An error naming the missing key, a few existing ones, and the likely intended one."""
    shown = ", ".join(sorted(keys)[:NUM_KEYS_SHOWN]) + (", ..." if len(keys) > NUM_KEYS_SHOWN else "")
    suggestion = suggest_key(key, keys)
    if suggestion is None:
        hint = f"pass the right key{f' with {option}' if option else ''}"
    else:
        hint = f"did you mean '{suggestion}'?" + (f" (pass {option} {suggestion})" if option else "")
    return Eagle3Error(f"tensor '{key}' not found in {model_dir} ({len(keys)} tensors: {shown})", hint=hint)


def read_target_tensor(model: str | Path, key: str, *, option: str | None = None) -> torch.Tensor:
    """One tensor of the target (folder or hub id) by its safetensors key, in its stored dtype.

    ``option`` names the CLI flag that sets ``key``, for the error message.
    """
    from safetensors import safe_open

    model_dir = resolve_model_dir(str(model), allow_patterns=["*.safetensors", INDEX_FILE, "config.json"])
    key_map = safetensors_key_map(model_dir)
    if key not in key_map:
        raise missing_key_error(key, list(key_map), model_dir, option)
    with reading_weights(model_dir, "target"), safe_open(key_map[key], framework="pt") as handle:
        return handle.get_tensor(key)


def read_embed_tokens(model: str | Path, embed_key: str = DEFAULT_EMBED_KEY) -> torch.Tensor:
    """The target's input embedding ``[vocab, hidden]``."""
    return read_target_tensor(model, embed_key, option="--embed-key")


def read_final_norm(model: str | Path, embed_key: str = DEFAULT_EMBED_KEY) -> torch.Tensor:
    """The target's final norm weight ``[hidden]``: ``norm.weight`` beside the embedding
    (``model.embed_tokens.weight`` → ``model.norm.weight``)."""
    prefix = embed_key.removesuffix("embed_tokens.weight") if embed_key.endswith("embed_tokens.weight") else "model."
    return read_target_tensor(model, prefix + "norm.weight")


def read_lm_head(
    model: str | Path, lm_head_key: str | None = None, *, embed_key: str = DEFAULT_EMBED_KEY
) -> torch.Tensor:
    """The target's output projection ``[vocab, hidden]``; without ``lm_head_key``, the
    default for the target's config (its embedding when it ties them)."""
    if lm_head_key is None:
        config_path = resolve_model_dir(str(model)) / "config.json"
        target_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        lm_head_key = embed_key if target_config.get("tie_word_embeddings") else DEFAULT_LM_HEAD_KEY
    return read_target_tensor(model, lm_head_key, option="--lm-head-key")
