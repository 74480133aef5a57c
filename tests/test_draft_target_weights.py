"""Reading the target's lm_head / embedding straight from its safetensors (single, tied, sharded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders.models import build_tiny_target
from safetensors.torch import save_file

from eagle3cli.errors import Eagle3Error
from eagle3cli.target.weights import read_embed_tokens, read_lm_head, read_target_tensor

VOCAB_SIZE = 96


def test_single_file_lm_head_and_embedding(tmp_path: Path) -> None:
    model = build_tiny_target("qwen3", VOCAB_SIZE)
    model.save_pretrained(tmp_path)
    assert torch.equal(read_lm_head(tmp_path), model.lm_head.weight)
    assert torch.equal(read_embed_tokens(tmp_path), model.model.embed_tokens.weight)
    assert not torch.equal(read_lm_head(tmp_path), read_embed_tokens(tmp_path))


def test_tied_target_uses_the_embedding(tmp_path: Path) -> None:
    model = build_tiny_target("llama", VOCAB_SIZE)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is True
    assert torch.equal(read_lm_head(tmp_path), model.model.embed_tokens.weight)


def write_sharded(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Two shards and a ``model.safetensors.index.json``, as ``save_pretrained`` writes them."""
    names = list(tensors)  # state-dict order: the embedding first, lm_head last
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    weight_map = {}
    for filename, keys in shards.items():
        save_file({key: tensors[key].contiguous() for key in keys}, directory / filename)
        weight_map.update(dict.fromkeys(keys, filename))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    (directory / "config.json").write_text(json.dumps({"tie_word_embeddings": False}))


def test_sharded_target(tmp_path: Path) -> None:
    tensors = {key: value.detach() for key, value in build_tiny_target("qwen3", VOCAB_SIZE).state_dict().items()}
    write_sharded(tmp_path, tensors)
    lm_head, embed = read_lm_head(tmp_path), read_embed_tokens(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    assert index["lm_head.weight"] != index["model.embed_tokens.weight"]  # one tensor from each shard
    assert torch.equal(lm_head, tensors["lm_head.weight"]) and torch.equal(embed, tensors["model.embed_tokens.weight"])
    assert not (tmp_path / "model.safetensors").exists()


def test_missing_key_suggests_the_prefixed_one(tmp_path: Path) -> None:
    """A multimodal-style layout: the text model's weights sit under a prefix."""
    tensors = {"language_model.lm_head.weight": torch.zeros(4, 2), "language_model.model.embed_tokens.weight": torch.zeros(4, 2)}
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(Eagle3Error) as error:
        read_lm_head(tmp_path, "lm_head.weight")
    assert str(error.value) == (
        f"tensor 'lm_head.weight' not found in {tmp_path} (2 tensors: language_model.lm_head.weight, "
        "language_model.model.embed_tokens.weight) — did you mean 'language_model.lm_head.weight'? "
        "(pass --lm-head-key language_model.lm_head.weight)"
    )


def test_missing_key_suggests_the_closest_spelling_or_lists_keys(tmp_path: Path) -> None:
    tensors = {f"model.layers.{i}.mlp.up_proj.weight": torch.zeros(1) for i in range(10)}
    save_file({**tensors, "model.embed_tokens.weight": torch.zeros(4, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(Eagle3Error, match="did you mean 'model.embed_tokens.weight'"):
        read_embed_tokens(tmp_path, "model.embed_token.weight")
    with pytest.raises(Eagle3Error) as error:
        read_target_tensor(tmp_path, "output.weight")
    assert "not found" in str(error.value) and "(11 tensors: model.embed_tokens.weight, " in str(error.value)
    assert str(error.value).endswith(", ...) — pass the right key")


def test_folder_without_safetensors(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="has neither model.safetensors nor model.safetensors.index.json"):
        read_lm_head(tmp_path, "lm_head.weight")
