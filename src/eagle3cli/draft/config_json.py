"""The draft checkpoint's ``config.json``: :class:`DraftConfig` ↔ the JSON vLLM and SGLang read.

The capture layers are written both ways: top-level ``eagle_aux_hidden_state_layer_ids`` in
vLLM numbering (id ``k`` = HF ``hidden_states[k]``, the input of decoder layer ``k``; vLLM
reads it first) and ``eagle_config.eagle_aux_hidden_state_layer_ids`` in SGLang numbering
(output of layer ``k - 1``; SGLang adds one back). ``tie_word_embeddings`` is always false:
SGLang would otherwise make ``lm_head`` the (full-vocabulary) embedding.

Rope settings are written the legacy way (``rope_theta`` + ``rope_scaling``), which every
transformers version and both engines read; transformers 5's ``rope_parameters`` is
accepted on input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eagle3cli.draft.config import DraftConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, read_json_object

ARCHITECTURE = "LlamaForCausalLMEagle3"
VLLM_LAYER_IDS_KEY = "eagle_aux_hidden_state_layer_ids"
EAGLE_CONFIG_KEY = "eagle_config"
NUM_AUX_LAYERS = 3
# vLLM adds ``hidden_states + residual`` of the layer it captures; at layer 0 there is no
# residual yet, so id 0 (the embedding output) cannot be captured by either engine.
MIN_AUX_LAYER_ID = 1
DEFAULT_ROPE_THETA = 10000.0  # LlamaConfig's default, used when a config names none

REQUIRED_INT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "max_position_embeddings",
    "vocab_size",
    "draft_vocab_size",
)
# Keys this module writes; every other key of a config.json is kept in ``DraftConfig.extra``.
OWNED_KEYS = frozenset(
    {
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta", "rope_scaling",
        "rope_parameters", "max_position_embeddings", "num_hidden_layers", "vocab_size",
        "draft_vocab_size", "target_hidden_size", "tie_word_embeddings", VLLM_LAYER_IDS_KEY,
        EAGLE_CONFIG_KEY, "fc_norm",
    }
)


def draft_config_to_json(config: DraftConfig) -> dict[str, Any]:
    """The checkpoint ``config.json`` mapping for ``config`` (extra keys last, never overriding)."""
    data: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "hidden_act": config.hidden_act,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": config.rope_scaling,
        "max_position_embeddings": config.max_position_embeddings,
        "num_hidden_layers": 1,
        "vocab_size": config.vocab_size,
        "draft_vocab_size": config.draft_vocab_size,
        "target_hidden_size": config.target_hidden_size,
        "tie_word_embeddings": False,
        VLLM_LAYER_IDS_KEY: list(config.aux_layer_ids),
        EAGLE_CONFIG_KEY: {
            VLLM_LAYER_IDS_KEY: list(config.sglang_layer_ids),
            "use_aux_hidden_state": True,
        },
    }
    if config.fc_norm:  # written only when on: the paper's draft stays byte-for-byte what it was
        data["fc_norm"] = True
    data.update({key: value for key, value in config.extra.items() if key not in OWNED_KEYS})
    return data


def rope_from_config(config: Mapping[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` from a model config, legacy or transformers-5 style."""
    parameters = config.get("rope_parameters")
    if isinstance(parameters, Mapping) and isinstance(parameters.get("full_attention"), Mapping):
        parameters = parameters["full_attention"]  # per-layer-type rope: the global layers' one
    if isinstance(parameters, Mapping) and parameters:
        scaling = {key: value for key, value in parameters.items() if key != "rope_theta"}
        theta = parameters.get("rope_theta", config.get("rope_theta", DEFAULT_ROPE_THETA))
        is_default = scaling.get("rope_type", scaling.get("type", "default")) == "default"
        return float(theta), None if is_default else scaling
    scaling = config.get("rope_scaling")
    return float(config.get("rope_theta") or DEFAULT_ROPE_THETA), dict(scaling) if scaling else None


def aux_layer_id_problems(layer_ids: Sequence[Any]) -> list[str]:
    """What is wrong with capture layer ids (vLLM numbering) on their own; the bound from
    the target's depth is checked with the target (``derive.draft_target_problems``)."""
    if len(layer_ids) != NUM_AUX_LAYERS or not all(is_int(layer_id) for layer_id in layer_ids):
        return [f"capture layer ids {list(layer_ids)} must be {NUM_AUX_LAYERS} integers"]
    problems = []
    if any(low >= high for low, high in zip(layer_ids, layer_ids[1:])):
        problems.append(f"capture layer ids {list(layer_ids)} must be distinct and increasing")
    if min(layer_ids) < MIN_AUX_LAYER_ID:
        problems.append(
            f"capture layer ids {list(layer_ids)} must be >= {MIN_AUX_LAYER_ID} in vLLM numbering "
            "(id 0 is the embedding output, which the engines cannot capture)"
        )
    return problems


def draft_config_problems(config: DraftConfig) -> list[str]:
    """Internal consistency of a draft config (sizes, vocabularies, capture layers)."""
    problems = aux_layer_id_problems(config.aux_layer_ids)
    if config.num_attention_heads % config.num_key_value_heads != 0:
        problems.append(
            f"num_attention_heads {config.num_attention_heads} is not a multiple of "
            f"num_key_value_heads {config.num_key_value_heads}"
        )
    if config.draft_vocab_size > config.vocab_size:
        problems.append(f"draft_vocab_size {config.draft_vocab_size} exceeds vocab_size {config.vocab_size}")
    return problems


def parse_draft_config(data: Mapping[str, Any]) -> tuple[DraftConfig | None, list[str]]:
    """Read a checkpoint ``config.json`` mapping: the config (``None`` if unusable) and every problem."""
    problems = [*format_problems(data), *field_problems(data)]
    layer_ids, layer_problems = read_layer_ids(data)
    problems += layer_problems
    if problems:
        return None, problems
    config = config_from_fields(data, layer_ids)
    problems = draft_config_problems(config)
    return (None if problems else config), problems


def draft_config_from_json(data: Mapping[str, Any], *, source: str = "config.json") -> DraftConfig:
    """Like :func:`parse_draft_config`, raising one :class:`Eagle3Error` that lists every problem."""
    config, problems = parse_draft_config(data)
    if config is None:
        raise Eagle3Error(f"invalid draft config {source}: " + "; ".join(problems))
    return config


def read_draft_config(path: Path) -> DraftConfig:
    """Read a draft checkpoint's ``config.json`` (a file, or the checkpoint folder)."""
    return draft_config_from_json(read_json(path), source=str(path))


def write_draft_config(path: Path, config: DraftConfig) -> None:
    """Write ``config`` as a checkpoint ``config.json`` (atomically)."""
    atomic_write_json(path, draft_config_to_json(config))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (or ``path/config.json`` for a folder), with clear errors."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    return read_json_object(path, "pass a draft checkpoint folder holding config.json")[0]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def format_problems(data: Mapping[str, Any]) -> list[str]:
    """The fixed fields of the format: architecture, one layer, untied head, aux states on."""
    expected = {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "tie_word_embeddings": False,
    }
    problems = [
        f"config.json: {key} is {json.dumps(data.get(key))}, expected {json.dumps(value)}"
        for key, value in expected.items()
        if data.get(key) != value
    ]
    eagle_config = data.get(EAGLE_CONFIG_KEY)
    if isinstance(eagle_config, Mapping) and eagle_config.get("use_aux_hidden_state") is not True:
        problems.append("config.json: eagle_config.use_aux_hidden_state must be true")
    return problems


def field_problems(data: Mapping[str, Any]) -> list[str]:
    """Types of the size fields (required ones, and optional ones when present)."""
    problems = [  # the optional ones only when present
        f"config.json: {key} must be a positive integer, got {json.dumps(data.get(key))}"
        for key in (*REQUIRED_INT_FIELDS, "num_key_value_heads", "head_dim", "target_hidden_size")
        if (key in REQUIRED_INT_FIELDS or data.get(key) is not None) and not (is_int(data.get(key)) and data[key] > 0)
    ]
    if not isinstance(data.get("fc_norm", False), bool):
        problems.append(f"config.json: fc_norm must be true or false, got {json.dumps(data.get('fc_norm'))}")
    if not isinstance(data.get("rms_norm_eps"), (int, float)) or isinstance(data.get("rms_norm_eps"), bool):
        problems.append(f"config.json: rms_norm_eps must be a number, got {json.dumps(data.get('rms_norm_eps'))}")
    return problems


def read_layer_ids(data: Mapping[str, Any]) -> tuple[tuple[int, ...], list[str]]:
    """Capture layers (vLLM numbering) from both fields, which must be present and agree."""
    vllm_ids = data.get(VLLM_LAYER_IDS_KEY)
    eagle_config = data.get(EAGLE_CONFIG_KEY)
    sglang_ids = eagle_config.get(VLLM_LAYER_IDS_KEY) if isinstance(eagle_config, Mapping) else None
    problems = []
    if not isinstance(vllm_ids, list):
        problems.append(f"config.json: {VLLM_LAYER_IDS_KEY} (vLLM numbering) is missing or not a list")
    if not isinstance(sglang_ids, list):
        problems.append(f"config.json: {EAGLE_CONFIG_KEY}.{VLLM_LAYER_IDS_KEY} (SGLang numbering) is missing or not a list")
    if problems:
        return (), problems
    if not all(is_int(layer_id) for layer_id in [*vllm_ids, *sglang_ids]):
        return (), [f"config.json: capture layer ids must be integers, got {vllm_ids} and {sglang_ids}"]
    if [layer_id - 1 for layer_id in vllm_ids] != sglang_ids:
        problems.append(
            f"config.json: capture layers disagree: {VLLM_LAYER_IDS_KEY} {vllm_ids} (vLLM) should be "
            f"{EAGLE_CONFIG_KEY}.{VLLM_LAYER_IDS_KEY} {sglang_ids} (SGLang) plus one"
        )
    return tuple(vllm_ids), problems


def model_shape_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The Llama-shape fields a draft shares with its target, from either one's config.json
    (optional ones default as transformers and the engines default them)."""
    rope_theta, rope_scaling = rope_from_config(data)
    num_heads = data["num_attention_heads"]
    return {
        "hidden_size": data["hidden_size"],
        "intermediate_size": data["intermediate_size"],
        "num_attention_heads": num_heads,
        "num_key_value_heads": data.get("num_key_value_heads") or num_heads,
        "head_dim": data.get("head_dim") or data["hidden_size"] // num_heads,
        "rms_norm_eps": float(data["rms_norm_eps"]),
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": data["max_position_embeddings"],
        "vocab_size": data["vocab_size"],
        "hidden_act": data.get("hidden_act", "silu"),
    }


def config_from_fields(data: Mapping[str, Any], layer_ids: tuple[int, ...]) -> DraftConfig:
    """Build the config from validated checkpoint fields."""
    return DraftConfig(
        **model_shape_fields(data),
        draft_vocab_size=data["draft_vocab_size"],
        target_hidden_size=data.get("target_hidden_size") or data["hidden_size"],
        aux_layer_ids=layer_ids,  # type: ignore[arg-type]  # length checked by draft_config_problems
        fc_norm=data.get("fc_norm", False),
        extra={key: value for key, value in data.items() if key not in OWNED_KEYS},
    )
