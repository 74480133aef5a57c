"""Draft checkpoint save/load: the exact vLLM/SGLang key set, refusal of bad state dicts, same outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from builders.models import build_tiny_target
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from eagle3cli.draft.checkpoint import checkpoint_shapes, load_checkpoint, save_checkpoint, save_draft_model
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.weights import read_embed_tokens

VOCAB_SIZE = 512
DRAFT_VOCAB_SIZE = 100
# The contract for every tiny target (hidden 64, 4 heads / 2 kv heads of 16, intermediate 128).
EXPECTED_SHAPES = {
    "fc.weight": (64, 192),
    "midlayer.input_layernorm.weight": (64,),
    "midlayer.hidden_norm.weight": (64,),
    "midlayer.self_attn.q_proj.weight": (64, 128),
    "midlayer.self_attn.k_proj.weight": (32, 128),
    "midlayer.self_attn.v_proj.weight": (32, 128),
    "midlayer.self_attn.o_proj.weight": (64, 64),
    "midlayer.post_attention_layernorm.weight": (64,),
    "midlayer.mlp.gate_proj.weight": (128, 64),
    "midlayer.mlp.up_proj.weight": (128, 64),
    "midlayer.mlp.down_proj.weight": (64, 128),
    "norm.weight": (64,),
    "lm_head.weight": (DRAFT_VOCAB_SIZE, 64),
    "d2t": (DRAFT_VOCAB_SIZE,),
    "t2d": (VOCAB_SIZE,),
}


def tiny_draft_config(target_dir: Path, family: str = "qwen3") -> DraftConfig:
    """Save a tiny 8-layer target and derive its draft config."""
    build_tiny_target(family, VOCAB_SIZE, num_hidden_layers=8).save_pretrained(target_dir)
    return derive_draft_config(read_target_config(target_dir), draft_vocab_size=DRAFT_VOCAB_SIZE)


def tiny_draft(target_dir: Path, family: str = "qwen3") -> Eagle3DraftModel:
    """A draft for a freshly saved tiny target, with a vocab map from random counts."""
    config = tiny_draft_config(target_dir, family)
    torch.manual_seed(0)
    model = Eagle3DraftModel(config)
    vocab_map = build_vocab_map(torch.randint(0, 1000, (VOCAB_SIZE,)), DRAFT_VOCAB_SIZE)
    model.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    with torch.no_grad():  # RMSNorm weights start at one; make them matter for the output check
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


def draft_outputs(model: Eagle3DraftModel) -> torch.Tensor:
    """Two draft steps over fixed inputs: ``[1, T, draft_vocab]`` logits of the second."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB_SIZE, (1, 7), generator=generator)
    aux_hidden = torch.randn(1, 7, 3 * model.config.target_hidden_size, generator=generator)
    position_ids = torch.arange(7)[None]
    with torch.no_grad():
        hidden = model.layer(model.embed(input_ids), model.fuse(aux_hidden), position_ids)
        hidden = model.layer(model.embed(input_ids), hidden, position_ids + 1)
        return model.logits(hidden)


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_exact_keys_and_shapes(tmp_path: Path, family: str) -> None:
    model = tiny_draft(tmp_path / "target", family)
    save_draft_model(tmp_path / "draft", model)
    assert sorted(path.name for path in (tmp_path / "draft").iterdir()) == ["config.json", "model.safetensors"]
    with safe_open(tmp_path / "draft" / "model.safetensors", framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        assert handle.get_tensor("d2t").dtype == torch.int64 and handle.get_tensor("t2d").dtype == torch.bool
    assert shapes == EXPECTED_SHAPES
    assert checkpoint_shapes(model.config) == EXPECTED_SHAPES
    config = json.loads((tmp_path / "draft" / "config.json").read_text())
    assert (config["vocab_size"], config["draft_vocab_size"], config["target_hidden_size"]) == (VOCAB_SIZE, 100, 64)


def test_model_parameters_match_the_checkpoint_contract(tmp_path: Path) -> None:
    model = tiny_draft(tmp_path / "target")
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == {**EXPECTED_SHAPES, "embed_tokens.weight": (VOCAB_SIZE, 64)}


def test_save_embed_includes_the_embedding(tmp_path: Path) -> None:
    model = tiny_draft(tmp_path / "target")
    save_draft_model(tmp_path / "draft", model, save_embed=True)
    tensors = load_file(tmp_path / "draft" / "model.safetensors")
    assert set(tensors) == {*EXPECTED_SHAPES, "embed_tokens.weight"}
    assert torch.equal(tensors["embed_tokens.weight"], model.embed_tokens.weight)


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    model = tiny_draft(tmp_path / "target")
    model.embed_tokens.weight.data.copy_(read_embed_tokens(tmp_path / "target"))
    save_draft_model(tmp_path / "draft", model)
    loaded = load_checkpoint(tmp_path / "draft", embed_tokens=read_embed_tokens(tmp_path / "target"))
    assert loaded.config == model.config
    assert torch.equal(loaded.d2t, model.d2t) and torch.equal(loaded.t2d, model.t2d)
    assert torch.equal(draft_outputs(loaded), draft_outputs(model))
    save_draft_model(tmp_path / "with_embed", model, save_embed=True)
    assert torch.equal(draft_outputs(load_checkpoint(tmp_path / "with_embed")), draft_outputs(model))


def test_bfloat16_checkpoint_loads_exactly_into_float32(tmp_path: Path) -> None:
    model = tiny_draft(tmp_path / "target").to(torch.bfloat16)
    save_draft_model(tmp_path / "draft", model)
    assert load_file(tmp_path / "draft" / "model.safetensors")["fc.weight"].dtype == torch.bfloat16
    loaded = load_checkpoint(tmp_path / "draft")
    assert loaded.fc.weight.dtype == torch.float32
    assert torch.equal(loaded.fc.weight, model.fc.weight.float())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"add": "midlayer.self_attn.q_proj.bias"}, "unknown tensor 'midlayer.self_attn.q_proj.bias'"),
        ({"drop": "midlayer.hidden_norm.weight"}, "missing tensor 'midlayer.hidden_norm.weight'"),
        ({"drop": "d2t"}, "missing tensor 'd2t'"),
        ({"rename": ("norm.weight", "model.norm.weight")},
         "missing tensor 'norm.weight'; unknown tensor 'model.norm.weight' (did you mean 'norm.weight'?)"),
    ],
)
def test_save_refuses_missing_or_unknown_keys(tmp_path: Path, change: dict, message: str) -> None:
    model = tiny_draft(tmp_path / "target")
    state_dict = model.state_dict()
    if "add" in change:
        state_dict[change["add"]] = torch.zeros(64)
    if "drop" in change:
        del state_dict[change["drop"]]
    if "rename" in change:
        old, new = change["rename"]
        state_dict[new] = state_dict.pop(old)
    with pytest.raises(Eagle3Error) as error:
        save_checkpoint(tmp_path / "draft", state_dict, model.config)
    assert message in str(error.value)
    assert not (tmp_path / "draft").exists() or not any((tmp_path / "draft").iterdir())


def test_save_refuses_a_model_without_a_vocab_map(tmp_path: Path) -> None:
    model = Eagle3DraftModel(tiny_draft_config(tmp_path / "target"))
    with pytest.raises(Eagle3Error, match="t2d marks 0 target ids, expected draft_vocab_size 100"):
        save_draft_model(tmp_path / "draft", model)


def test_load_names_every_problem(tmp_path: Path) -> None:
    save_draft_model(tmp_path / "draft", tiny_draft(tmp_path / "target"))
    weights = tmp_path / "draft" / "model.safetensors"
    tensors = load_file(weights)
    tensors["fc.weight"] = torch.zeros(64, 96)
    tensors["d2t"] = tensors["d2t"].to(torch.int32)
    save_file(tensors, weights)
    with pytest.raises(Eagle3Error) as error:
        load_checkpoint(tmp_path / "draft")
    assert str(error.value) == (
        f"invalid draft checkpoint {tmp_path / 'draft'}: tensor 'fc.weight' has shape [64, 96], expected [64, 192]; "
        "d2t must be int64 [100], got int32 [100]"
    )


def test_load_checks_the_config(tmp_path: Path) -> None:
    save_draft_model(tmp_path / "draft", tiny_draft(tmp_path / "target"))
    config_path = tmp_path / "draft" / "config.json"
    config = json.loads(config_path.read_text())
    config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = config["eagle_aux_hidden_state_layer_ids"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(Eagle3Error, match="capture layers disagree"):
        load_checkpoint(tmp_path / "draft")
    config_path.unlink()
    with pytest.raises(Eagle3Error, match="config.json does not exist"):
        load_checkpoint(tmp_path / "draft")


def fc_norm_draft(target_dir: Path) -> Eagle3DraftModel:
    """The tiny draft with ``fc_norm``, its norm weights random so they change the output."""
    plain = tiny_draft(target_dir)
    model = Eagle3DraftModel(dataclasses.replace(plain.config, fc_norm=True))
    model.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for norm in model.fc_norm:
            norm.weight.uniform_(0.5, 1.5)
    return model


def test_fc_norm_round_trips_with_its_three_norms(tmp_path: Path) -> None:
    model = fc_norm_draft(tmp_path / "target")
    model.embed_tokens.weight.data.copy_(read_embed_tokens(tmp_path / "target"))
    save_draft_model(tmp_path / "draft", model)
    shapes = {key: tuple(value.shape) for key, value in load_file(tmp_path / "draft" / "model.safetensors").items()}
    assert shapes == {**EXPECTED_SHAPES, **{f"fc_norm.{index}.weight": (64,) for index in range(3)}}
    assert json.loads((tmp_path / "draft" / "config.json").read_text())["fc_norm"] is True
    loaded = load_checkpoint(tmp_path / "draft", embed_tokens=read_embed_tokens(tmp_path / "target"))
    assert loaded.config == model.config and torch.equal(draft_outputs(loaded), draft_outputs(model))
    plain = Eagle3DraftModel(tiny_draft_config(tmp_path / "other"))
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.equal(draft_outputs(plain), draft_outputs(model))  # the norms change the output
    assert "fc_norm" not in json.loads((save_draft_model(tmp_path / "plain", tiny_draft(tmp_path / "t2")) / "config.json").read_text())


def test_fc_norm_weights_must_match_the_config(tmp_path: Path) -> None:
    model = fc_norm_draft(tmp_path / "target")
    state = model.state_dict()
    del state["embed_tokens.weight"]
    with pytest.raises(Eagle3Error, match="missing tensor 'fc_norm.2.weight'"):
        save_checkpoint(tmp_path / "a", {key: value for key, value in state.items() if key != "fc_norm.2.weight"}, model.config)
    plain_config = dataclasses.replace(model.config, fc_norm=False)
    with pytest.raises(Eagle3Error, match="unknown tensor 'fc_norm.0.weight'"):
        save_checkpoint(tmp_path / "b", state, plain_config)
    save_checkpoint(tmp_path / "c", state, model.config)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps({**config, "fc_norm": "yes"}))
    with pytest.raises(Eagle3Error, match='fc_norm must be true or false, got "yes"'):
        load_checkpoint(tmp_path / "c")
