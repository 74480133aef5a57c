"""Draft config: derived from the target, read from a user's file, and the checkpoint config.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from builders.models import build_tiny_target
from transformers import LlamaConfig

from eagle3cli.draft.config_json import (
    draft_config_from_json,
    draft_config_to_json,
    parse_draft_config,
    read_draft_config,
    write_draft_config,
)
from eagle3cli.draft.derive import (
    default_aux_layer_ids,
    derive_draft_config,
    draft_config_from_file,
    resolve_draft_config,
)
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.spec import read_target_config

VOCAB_SIZE = 512


def save_target(directory: Path, family: str = "qwen3", num_hidden_layers: int = 8) -> Path:
    build_tiny_target(family, VOCAB_SIZE, num_hidden_layers=num_hidden_layers).save_pretrained(directory)
    return directory


def target_config(num_hidden_layers: int, **changes) -> dict:
    """A target config.json mapping like transformers 5 writes (rope in ``rope_parameters``)."""
    return {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 40000,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}, **changes,
    }


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_derived_config_copies_the_target_shape(tmp_path: Path, family: str) -> None:
    target = read_target_config(save_target(tmp_path, family))
    config = derive_draft_config(target, draft_vocab_size=100)
    assert (config.hidden_size, config.target_hidden_size, config.intermediate_size) == (64, 64, 128)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, 16)
    assert (config.rms_norm_eps, config.rope_theta, config.rope_scaling) == (1e-6, 10000.0, None)
    assert (config.max_position_embeddings, config.vocab_size, config.draft_vocab_size) == (2048, VOCAB_SIZE, 100)
    assert config.aux_layer_ids == (2, 4, 5)


def test_multimodal_target_uses_its_text_config(tmp_path: Path) -> None:
    text_config = target_config(8)
    (tmp_path / "config.json").write_text(json.dumps({"text_config": text_config, "tie_word_embeddings": True}))
    assert read_target_config(tmp_path) == {**text_config, "tie_word_embeddings": False}
    del text_config["tie_word_embeddings"]
    (tmp_path / "config.json").write_text(json.dumps({"text_config": text_config, "tie_word_embeddings": True}))
    assert read_target_config(tmp_path)["tie_word_embeddings"] is True


def test_draft_vocab_defaults_to_32000_capped_at_the_target_vocab() -> None:
    assert derive_draft_config(target_config(32)).draft_vocab_size == 32000
    assert derive_draft_config(target_config(32, vocab_size=1000)).draft_vocab_size == 1000
    with pytest.raises(Eagle3Error, match="draft_vocab_size 1001 exceeds vocab_size 1000"):
        derive_draft_config(target_config(32, vocab_size=1000), draft_vocab_size=1001)


def test_rope_is_read_from_both_config_styles() -> None:
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}
    modern = derive_draft_config(target_config(8, rope_parameters={"rope_theta": 5e5, **yarn}))
    legacy_target = target_config(8, rope_theta=5e5, rope_scaling=yarn)
    del legacy_target["rope_parameters"]
    legacy = derive_draft_config(legacy_target)
    assert (modern.rope_theta, modern.rope_scaling) == (legacy.rope_theta, legacy.rope_scaling) == (5e5, yarn)
    assert derive_draft_config(target_config(8)).rope_theta == 1e6


@pytest.mark.parametrize(("num_layers", "expected"), [(8, (2, 4, 5)), (28, (2, 14, 25)), (36, (2, 18, 33))])
def test_layer_ids_are_written_in_both_numberings(tmp_path: Path, num_layers: int, expected: tuple) -> None:
    config = derive_draft_config(target_config(num_layers))
    write_draft_config(tmp_path / "config.json", config)
    data = json.loads((tmp_path / "config.json").read_text())
    vllm_ids = data["eagle_aux_hidden_state_layer_ids"]
    sglang_ids = data["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    assert tuple(vllm_ids) == expected
    assert [v - s for v, s in zip(vllm_ids, sglang_ids)] == [1, 1, 1]
    assert data["eagle_config"]["use_aux_hidden_state"] is True
    assert read_draft_config(tmp_path / "config.json") == config


@pytest.mark.parametrize(("num_layers", "expected"), [(4, (1, 2, 3)), (5, (1, 2, 3)), (6, (2, 3, 4)), (7, (2, 3, 4))])
def test_colliding_default_layers_become_distinct(caplog, num_layers: int, expected: tuple) -> None:
    with caplog.at_level(logging.WARNING):
        assert default_aux_layer_ids(num_layers) == expected
    assert ("collide" in caplog.text) == (num_layers < 7)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_too_shallow_target_fails(num_layers: int) -> None:
    with pytest.raises(Eagle3Error, match=f"a {num_layers}-layer target has only {num_layers - 1} capturable layers"):
        default_aux_layer_ids(num_layers)


@pytest.mark.parametrize(
    ("layer_ids", "message"),
    [
        ((2, 2, 3), "must be distinct and increasing"),
        ((0, 2, 3), "must be >= 1"),
        ((2, 4, 8), r"must be < 8, the target's number of layers"),
        ((2, 4), "must be 3 integers"),
    ],
)
def test_explicit_layer_ids_are_checked_never_fixed(layer_ids: tuple, message: str) -> None:
    with pytest.raises(Eagle3Error, match=message):
        derive_draft_config(target_config(8), aux_layer_ids=layer_ids)


def test_config_json_has_exactly_the_format_keys() -> None:
    data = draft_config_to_json(derive_draft_config(target_config(8)))
    assert set(data) == {
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta", "rope_scaling",
        "max_position_embeddings", "num_hidden_layers", "vocab_size", "draft_vocab_size", "target_hidden_size",
        "tie_word_embeddings", "eagle_aux_hidden_state_layer_ids", "eagle_config",
    }
    assert (data["architectures"], data["model_type"]) == (["LlamaForCausalLMEagle3"], "llama")
    assert (data["num_hidden_layers"], data["tie_word_embeddings"]) == (1, False)


def test_transformers_reads_the_config_as_a_llama_config() -> None:
    """vLLM and SGLang parse config.json with transformers' LlamaConfig."""
    data = draft_config_to_json(derive_draft_config(target_config(8), draft_vocab_size=1000))
    llama = LlamaConfig.from_dict(data)
    assert (llama.hidden_size, llama.num_key_value_heads, llama.head_dim, llama.num_hidden_layers) == (64, 2, 16, 1)
    assert llama.rope_parameters["rope_theta"] == 1e6
    assert (llama.draft_vocab_size, llama.target_hidden_size) == (1000, 64)


def test_unknown_keys_round_trip_through_extra() -> None:
    data = {**draft_config_to_json(derive_draft_config(target_config(8))), "torch_dtype": "bfloat16"}
    config = draft_config_from_json(data)
    assert config.extra == {"torch_dtype": "bfloat16"}
    assert draft_config_to_json(config) == data


def test_disagreeing_numberings_are_reported() -> None:
    data = draft_config_to_json(derive_draft_config(target_config(8)))
    data["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = [2, 4, 5]
    config, problems = parse_draft_config(data)
    assert config is None
    assert problems == [
        "config.json: capture layers disagree: eagle_aux_hidden_state_layer_ids [2, 4, 5] (vLLM) should be "
        "eagle_config.eagle_aux_hidden_state_layer_ids [2, 4, 5] (SGLang) plus one"
    ]


def test_format_fields_and_missing_numbering_are_reported() -> None:
    data = draft_config_to_json(derive_draft_config(target_config(8)))
    data.update(tie_word_embeddings=True, num_hidden_layers=2)
    del data["eagle_aux_hidden_state_layer_ids"]
    del data["draft_vocab_size"]
    _, problems = parse_draft_config(data)
    assert problems == [
        "config.json: num_hidden_layers is 2, expected 1",
        "config.json: tie_word_embeddings is true, expected false",
        "config.json: draft_vocab_size must be a positive integer, got null",
        "config.json: eagle_aux_hidden_state_layer_ids (vLLM numbering) is missing or not a list",
    ]


def test_user_draft_config_overrides_derived_values(tmp_path: Path) -> None:
    path = tmp_path / "draft.json"
    path.write_text(json.dumps({"draft_vocab_size": 100, "eagle_config": {"eagle_aux_hidden_state_layer_ids": [0, 3, 6]}}))
    config = draft_config_from_file(path, target_config(8))
    assert (config.draft_vocab_size, config.aux_layer_ids, config.hidden_size) == (100, (1, 4, 7), 64)
    yaml_path = tmp_path / "draft.yaml"
    yaml_path.write_text("eagle_aux_hidden_state_layer_ids: [1, 4, 7]\nintermediate_size: 256\n")
    config = resolve_draft_config(target_config(8), draft_config_path=yaml_path, draft_vocab_size=200)
    assert (config.aux_layer_ids, config.intermediate_size, config.draft_vocab_size) == ((1, 4, 7), 256, 200)


def test_user_draft_config_is_checked_against_the_target(tmp_path: Path) -> None:
    path = tmp_path / "draft.json"
    path.write_text(json.dumps({"hidden_size": 128, "target_hidden_size": 128, "vocab_size": 50000,
                                "eagle_aux_hidden_state_layer_ids": [2, 4, 8]}))
    with pytest.raises(Eagle3Error) as error:
        draft_config_from_file(path, target_config(8))
    message = str(error.value)
    assert "target_hidden_size 128 != the target's hidden_size 64" in message
    assert "hidden_size 128 != the target's hidden_size 64" in message
    assert "vocab_size 50000 != the target's vocab_size 40000" in message
    assert "capture layer ids [2, 4, 8] must be < 8" in message
