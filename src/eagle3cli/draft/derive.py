"""A draft config for a target: derived from the target's ``config.json``, or read from the
user's draft config file and checked against the target.

The draft copies the target's attention and MLP shape (hidden size, heads, head_dim,
intermediate size, norm eps, rope) because it reuses the target's embedding and reads its
hidden states. Capture layers default to vLLM's own choice ``[2, N // 2, N - 3]``; on small
targets where those collide the nearest distinct valid layers are used, with a warning.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eagle3cli.configfile import read_config_file
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.config_json import (
    EAGLE_CONFIG_KEY,
    MIN_AUX_LAYER_ID,
    NUM_AUX_LAYERS,
    VLLM_LAYER_IDS_KEY,
    aux_layer_id_problems,
    draft_config_from_json,
    draft_config_problems,
    draft_config_to_json,
    is_int,
    model_shape_fields,
    rope_from_config,
)
from eagle3cli.errors import Eagle3Error

logger = logging.getLogger(__name__)

DEFAULT_DRAFT_VOCAB_SIZE = 32000
REQUIRED_TARGET_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "rms_norm_eps",
    "max_position_embeddings",
)


def default_aux_layer_ids(num_target_layers: int) -> tuple[int, int, int]:
    """vLLM's default capture layers ``[2, N // 2, N - 3]``, made distinct on small targets."""
    preferred = (2, num_target_layers // 2, num_target_layers - 3)
    if not aux_layer_id_problems(preferred):
        return preferred
    valid = range(MIN_AUX_LAYER_ID, num_target_layers)
    if len(valid) < NUM_AUX_LAYERS:
        raise Eagle3Error(
            f"a {num_target_layers}-layer target has only {len(valid)} capturable layers; EAGLE-3 needs "
            f"{NUM_AUX_LAYERS} distinct ones (vLLM ids >= {MIN_AUX_LAYER_ID} and < {num_target_layers})",
            hint=f"use a target with at least {NUM_AUX_LAYERS + MIN_AUX_LAYER_ID} layers",
        )
    chosen = min(
        itertools.combinations(valid, NUM_AUX_LAYERS),
        key=lambda ids: (sum(abs(a - b) for a, b in zip(ids, preferred)), ids),
    )
    logger.warning(
        "default capture layers %s collide on a %d-layer target; using the nearest distinct layers %s (vLLM numbering)",
        list(preferred), num_target_layers, list(chosen),
    )
    return chosen  # type: ignore[return-value]


def derive_draft_config(
    target_config: Mapping[str, Any],
    *,
    draft_vocab_size: int | None = None,
    aux_layer_ids: Sequence[int] | None = None,
) -> DraftConfig:
    """The draft config for a target ``config.json`` mapping.

    ``draft_vocab_size`` defaults to 32000 capped at the target vocabulary; ``aux_layer_ids``
    (vLLM numbering) to :func:`default_aux_layer_ids`. Explicit values are checked, never fixed.
    """
    missing = [key for key in REQUIRED_TARGET_FIELDS if target_config.get(key) is None]
    if missing:
        raise Eagle3Error(f"the target config lacks {', '.join(missing)}", hint="is it a decoder-only causal LM?")
    vocab_size = target_config["vocab_size"]
    if aux_layer_ids is None:
        aux_layer_ids = default_aux_layer_ids(target_config["num_hidden_layers"])
    config = DraftConfig(
        **model_shape_fields(target_config),
        draft_vocab_size=min(DEFAULT_DRAFT_VOCAB_SIZE, vocab_size) if draft_vocab_size is None else draft_vocab_size,
        target_hidden_size=target_config["hidden_size"],
        aux_layer_ids=tuple(aux_layer_ids),  # type: ignore[arg-type]  # length checked below
    )
    check_draft_against_target(config, target_config)
    return config


def draft_target_problems(config: DraftConfig, target_config: Mapping[str, Any], *, has_embed: bool = False) -> list[str]:
    """What makes ``config`` unusable with the target (sizes, vocabulary, capture layers).

    The draft's own ``hidden_size`` must equal the target's unless the checkpoint carries its
    own embedding (``has_embed``): otherwise the engines reuse the target's.
    """
    target_hidden = target_config.get("hidden_size")
    problems = []
    if config.target_hidden_size != target_hidden:
        problems.append(f"target_hidden_size {config.target_hidden_size} != the target's hidden_size {target_hidden}")
    if not has_embed and config.hidden_size != target_hidden:
        problems.append(
            f"hidden_size {config.hidden_size} != the target's hidden_size {target_hidden} "
            "(the draft reuses the target's embedding)"
        )
    if config.vocab_size != target_config.get("vocab_size"):
        problems.append(f"vocab_size {config.vocab_size} != the target's vocab_size {target_config.get('vocab_size')}")
    num_layers = target_config.get("num_hidden_layers")
    if isinstance(num_layers, int) and max(config.aux_layer_ids, default=0) >= num_layers:
        problems.append(
            f"capture layer ids {list(config.aux_layer_ids)} must be < {num_layers}, "
            "the target's number of layers (vLLM numbering)"
        )
    return problems


def draft_target_warnings(config: DraftConfig, target_config: Mapping[str, Any]) -> list[str]:
    """Settings that load fine but are known to lower acceptance silently in SGLang and vLLM:
    fewer positions than the target, another rope, another head shape."""
    warnings = []
    target_positions = target_config.get("max_position_embeddings")
    if is_int(target_positions) and config.max_position_embeddings < target_positions:
        warnings.append(
            f"max_position_embeddings {config.max_position_embeddings} < the target's {target_positions}: "
            "positions beyond it get rope the draft never saw (or the engine refuses long prompts)"
        )
    target_rope = rope_from_config(target_config)
    if (config.rope_theta, config.rope_scaling) != target_rope:
        warnings.append(
            f"rope (theta {config.rope_theta}, scaling {json.dumps(config.rope_scaling)}) differs from the target's "
            f"(theta {target_rope[0]}, scaling {json.dumps(target_rope[1])})"
        )
    target_shape = model_shape_fields(target_config) if all(target_config.get(key) for key in REQUIRED_TARGET_FIELDS[:4]) else {}
    for key in ("head_dim", "num_attention_heads", "num_key_value_heads"):
        if key in target_shape and getattr(config, key) != target_shape[key]:
            warnings.append(f"{key} {getattr(config, key)} != the target's {target_shape[key]}")
    return warnings


def check_draft_against_target(config: DraftConfig, target_config: Mapping[str, Any]) -> None:
    """Raise one :class:`Eagle3Error` listing every problem of ``config`` on its own and for the target."""
    problems = draft_config_problems(config) + draft_target_problems(config, target_config)
    if problems:
        raise Eagle3Error("draft config does not fit the target: " + "; ".join(problems))


def draft_config_from_file(path: Path, target_config: Mapping[str, Any]) -> DraftConfig:
    """A user's draft config file (JSON/YAML/TOML, checkpoint style) laid over the derived one.

    Keys the file omits come from :func:`derive_draft_config`; capture layers may be given in
    either numbering (both must agree when both are given). The result is checked against the target.
    """
    user = read_config_file(Path(path))
    base = draft_config_to_json(derive_draft_config(target_config))
    user_eagle = user.get(EAGLE_CONFIG_KEY)
    user_eagle = dict(user_eagle) if isinstance(user_eagle, Mapping) else {}
    vllm_ids, sglang_ids = user.get(VLLM_LAYER_IDS_KEY), user_eagle.get(VLLM_LAYER_IDS_KEY)
    if vllm_ids is None and sglang_ids is not None:
        vllm_ids = shift_layer_ids(sglang_ids, +1)
    if sglang_ids is None and vllm_ids is not None:
        sglang_ids = shift_layer_ids(vllm_ids, -1)
    merged = {**base, **user, EAGLE_CONFIG_KEY: {**base[EAGLE_CONFIG_KEY], **user_eagle}}
    if vllm_ids is not None:
        merged[VLLM_LAYER_IDS_KEY] = vllm_ids
        merged[EAGLE_CONFIG_KEY][VLLM_LAYER_IDS_KEY] = sglang_ids
    config = draft_config_from_json(merged, source=str(path))
    check_draft_against_target(config, target_config)
    return config


def shift_layer_ids(layer_ids: Any, offset: int) -> Any:
    """Convert between numberings (vLLM = SGLang + 1); malformed values pass through to be reported."""
    if isinstance(layer_ids, list) and all(isinstance(layer_id, int) for layer_id in layer_ids):
        return [layer_id + offset for layer_id in layer_ids]
    return layer_ids


def resolve_draft_config(
    target_config: Mapping[str, Any], *, draft_config_path: Path | None = None, draft_vocab_size: int | None = None
) -> DraftConfig:
    """The one entry point for stages: a file (``--draft-config``) or derivation, then the ``--draft-vocab-size`` override."""
    if draft_config_path is None:
        return derive_draft_config(target_config, draft_vocab_size=draft_vocab_size)
    config = draft_config_from_file(draft_config_path, target_config)
    if draft_vocab_size is not None:
        config = dataclasses.replace(config, draft_vocab_size=draft_vocab_size)
        check_draft_against_target(config, target_config)
    return config
