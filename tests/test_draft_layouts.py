"""Draft layouts: every published layout reads into the same draft; ``eagle3 convert`` writes
eagle3, speculators and ModelOpt losslessly (tensor equality after every round trip).

The foreign fixtures are built here from what each project's code writes (see the module
docstring of ``eagle3cli.draft.layouts``): EAGLE's ``pytorch_model.bin`` without capture
layers, SpecForge's safetensors with output-numbered ``eagle_config`` ids, AngelSlim's trainer
output (its own architecture name, ``aux_hidden_states_layer_ids``, embedding included), an
older ModelOpt export (``midlayer.*``, no ``t2d``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from builders.models import build_tiny_target
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from eagle3cli.cli.main import app
from eagle3cli.draft.checkpoint import inspect_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from eagle3cli.draft.config_json import draft_config_to_json
from eagle3cli.draft.convert import convert_draft
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.layouts import detect_layout
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.errors import Eagle3Error

VOCAB_SIZE = 256
DRAFT_VOCAB_SIZE = 64
NUM_LAYERS = 8  # default capture layers (vLLM numbering) [2, 4, 5]
runner = CliRunner()


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    build_tiny_target("qwen3", VOCAB_SIZE, num_hidden_layers=NUM_LAYERS).save_pretrained(tmp_path / "target")
    return tmp_path / "target"


def draft_state(target_dir: Path, *, aux_layer_ids=(1, 3, 6), dtype=torch.bfloat16, draft_vocab_size=DRAFT_VOCAB_SIZE) -> tuple:
    """A draft whose every tensor is distinct (random norms, a non-trivial map), in ``dtype``."""
    config = derive_draft_config(read_target_config(target_dir), draft_vocab_size=draft_vocab_size, aux_layer_ids=aux_layer_ids)
    torch.manual_seed(0)
    model = Eagle3DraftModel(config)
    vocab_map = build_vocab_map(torch.randperm(VOCAB_SIZE), draft_vocab_size)
    model.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    state = {key: (value.to(dtype) if value.is_floating_point() else value) for key, value in model.state_dict().items()}
    return config, state


@pytest.fixture
def eagle3_dir(tmp_path: Path, target_dir: Path) -> Path:
    config, state = draft_state(target_dir)
    del state["embed_tokens.weight"]
    return save_checkpoint(tmp_path / "eagle3", state, config)


def assert_same_draft(left: Path, right: Path, target_dir: Path | None = None) -> None:
    target_config = None if target_dir is None else read_target_config(target_dir)
    left_config, left_tensors, _ = read_checkpoint(left, target_config=target_config)
    right_config, right_tensors, _ = read_checkpoint(right, target_config=target_config)
    assert left_config == right_config
    assert sorted(left_tensors) == sorted(right_tensors)
    for key, tensor in left_tensors.items():
        assert tensor.dtype == right_tensors[key].dtype and torch.equal(tensor, right_tensors[key]), key


@pytest.mark.parametrize("first, second", list(itertools.product(["eagle3", "speculators", "modelopt"], repeat=2)))
def test_every_pair_of_layouts_round_trips_bit_for_bit(eagle3_dir: Path, target_dir: Path, tmp_path: Path, first: str, second: str) -> None:
    target_config = read_target_config(target_dir)
    one = convert_draft(eagle3_dir, first, tmp_path / "one", target_config=target_config, target_name=str(target_dir)).output_dir
    named = second == "speculators" and first != "speculators"  # a speculators source keeps its verifier
    two = convert_draft(one, second, tmp_path / "two", target_config=target_config if named else None,
                        target_name=str(target_dir) if named else None).output_dir
    back = convert_draft(two, "eagle3", tmp_path / "back").output_dir
    assert (detect_layout(one), detect_layout(two), detect_layout(back)) == (first, second, "eagle3")
    assert_same_draft(eagle3_dir, back)
    assert load_file(back / "model.safetensors").keys() == load_file(eagle3_dir / "model.safetensors").keys()
    assert json.loads((back / "config.json").read_text()) == json.loads((eagle3_dir / "config.json").read_text())


def test_the_written_layouts_hold_what_each_engine_reads(eagle3_dir: Path, target_dir: Path, tmp_path: Path) -> None:
    target_config = read_target_config(target_dir)
    speculators = convert_draft(eagle3_dir, "speculators", tmp_path / "spec", target_config=target_config,
                                target_name="Qwen/Qwen3-8B", speculative_tokens=5).output_dir
    config = json.loads((speculators / "config.json").read_text())
    assert "model_type" not in config  # vLLM recognises the layout by speculators_config then
    assert config["speculators_model_type"] == "eagle3" and config["norm_before_residual"] is False
    assert config["speculators_config"]["verifier"] == {"name_or_path": "Qwen/Qwen3-8B", "architectures": ["Qwen3ForCausalLM"]}
    assert config["speculators_config"]["proposal_methods"][0]["speculative_tokens"] == 5
    assert config["eagle_aux_hidden_state_layer_ids"] == [1, 3, 6]  # vLLM numbering
    assert config["transformer_layer_config"]["model_type"] == "llama"
    keys = load_file(speculators / "model.safetensors").keys()
    assert "layers.0.self_attn.q_proj.weight" in keys and not any(key.startswith("midlayer.") for key in keys)
    assert {"d2t", "t2d"} <= keys

    modelopt = convert_draft(eagle3_dir, "modelopt", tmp_path / "modelopt").output_dir
    config = json.loads((modelopt / "config.json").read_text())
    assert config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 2, 5]  # ModelOpt's output numbering
    assert config["eagle_aux_hidden_state_layer_ids"] == [1, 3, 6]  # and vLLM's, which vLLM reads first
    assert config["eagle_config"]["use_last_layernorm"] is True and config["architectures"] == ["LlamaForCausalLMEagle3"]
    keys = load_file(modelopt / "model.safetensors").keys()
    assert "layers.0.hidden_norm.weight" in keys and "t2d" not in keys and "d2t" in keys


def eagle_original(directory: Path, target_dir: Path) -> tuple:
    """SafeAILab EAGLE-3's training output: DeepSpeed's pytorch_model.bin (frozen embedding
    excluded), a config with Llama fields and draft_vocab_size and no capture layers (EAGLE
    reads the inputs of layers 2, N // 2, N - 3)."""
    config, state = draft_state(target_dir, aux_layer_ids=(2, 4, 5), dtype=torch.float16)
    del state["embed_tokens.weight"]
    directory.mkdir()
    torch.save(state, directory / "pytorch_model.bin")
    data = draft_config_to_json(config)
    for key in ("eagle_aux_hidden_state_layer_ids", "eagle_config", "target_hidden_size", "rms_norm_eps"):
        del data[key]
    (directory / "config.json").write_text(json.dumps(data))
    return config, state


def test_vllm_gets_a_layout_it_misreads_as_a_conversion(tmp_path: Path, target_dir: Path, eagle3_dir: Path) -> None:
    from eagle3cli.draft.convert import vllm_loadable

    with vllm_loadable(eagle3_dir, target_dir, tmp_path / "logs") as served:
        assert served == eagle3_dir
    eagle_original(tmp_path / "eagle", target_dir)
    with vllm_loadable(tmp_path / "eagle", target_dir, tmp_path / "logs") as served:
        assert served.parent.parent == tmp_path / "logs" and detect_layout(served) == "eagle3"
        assert_same_draft(served, tmp_path / "eagle", target_dir)
    assert not served.exists()


def test_an_eagle_original_reads_with_the_targets_default_layers(tmp_path: Path, target_dir: Path) -> None:
    config, state = eagle_original(tmp_path / "eagle", target_dir)
    assert detect_layout(tmp_path / "eagle") == "eagle"
    with pytest.raises(Eagle3Error, match="names no capture layers — pass --target-model"):
        read_checkpoint(tmp_path / "eagle")
    read_config, tensors, read = read_checkpoint(tmp_path / "eagle", target_config=read_target_config(target_dir))
    assert read_config == config and read.layout == "eagle"
    assert all(torch.equal(tensors[key], value) for key, value in state.items())
    assert any("default [2, N // 2, N - 3]" in note for note in read.notes)
    converted = convert_draft(tmp_path / "eagle", "eagle3", tmp_path / "out", target_config=read_target_config(target_dir))
    assert json.loads((converted.output_dir / "config.json").read_text())["eagle_aux_hidden_state_layer_ids"] == [2, 4, 5]


def test_a_pickle_that_is_not_plain_tensors_is_refused_not_run(tmp_path: Path, target_dir: Path) -> None:
    eagle_original(tmp_path / "eagle", target_dir)
    torch.save({"fc.weight": torch.zeros(1), "code": Path("x")}, tmp_path / "eagle" / "pytorch_model.bin")
    with pytest.raises(Eagle3Error, match="does not load as plain tensors"):
        read_checkpoint(tmp_path / "eagle", target_config=read_target_config(target_dir))


def test_specforge_ids_count_layer_outputs_and_vllm_would_misread_them(tmp_path: Path, target_dir: Path) -> None:
    config, state = draft_state(target_dir)
    del state["embed_tokens.weight"]
    directory = tmp_path / "specforge"
    directory.mkdir()
    save_file(state, directory / "model.safetensors")
    data = draft_config_to_json(config)
    del data["eagle_aux_hidden_state_layer_ids"]  # only eagle_config's [0, 2, 5]: the outputs of layers 0, 2, 5
    (directory / "config.json").write_text(json.dumps(data))
    report = inspect_checkpoint(directory)
    assert report.layout == "eagle" and report.problems == [] and report.config == config
    assert report.warnings == [
        "capture layers [0, 2, 5] are written in output-of-layer numbering only; vLLM reads them as its own "
        "(one layer early): serve the converted draft (ids [1, 3, 6] in vLLM numbering)"
    ]


def test_an_angelslim_trainer_draft_reads_with_its_embedding_and_layers(tmp_path: Path, target_dir: Path) -> None:
    config, state = draft_state(target_dir)
    directory = tmp_path / "angelslim"
    directory.mkdir()
    save_file(state, directory / "model.safetensors")  # Trainer.save_model keeps embed_tokens
    data = {**draft_config_to_json(config), "architectures": ["Eagle3LlamaForCausalLM"], "modal_type": "LLM",
            "aux_hidden_states_layer_ids": [0, 2, 5]}
    del data["eagle_aux_hidden_state_layer_ids"], data["eagle_config"]
    (directory / "config.json").write_text(json.dumps(data))
    model = load_checkpoint(directory)
    assert model.config.aux_layer_ids == (1, 3, 6) and torch.equal(model.embed_tokens.weight, state["embed_tokens.weight"].float())
    out = convert_draft(directory, "eagle3", tmp_path / "out")
    assert out.source_layout == "angelslim" and "embed_tokens.weight" in load_file(out.output_dir / "model.safetensors")
    assert json.loads((out.output_dir / "config.json").read_text())["modal_type"] == "LLM"  # unknown keys travel


def test_an_older_modelopt_export_gets_its_t2d_rebuilt(tmp_path: Path, target_dir: Path, eagle3_dir: Path) -> None:
    config, state = draft_state(target_dir)
    del state["embed_tokens.weight"], state["t2d"]
    directory = tmp_path / "modelopt"
    directory.mkdir()
    save_file(state, directory / "model.safetensors")
    data = draft_config_to_json(config)
    del data["eagle_aux_hidden_state_layer_ids"], data["target_hidden_size"]
    data["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": [0, 2, 5], "use_aux_hidden_state": True,
                            "use_input_layernorm_in_first_layer": True, "use_last_layernorm": True, "use_mtp_layernorm": False}
    (directory / "config.json").write_text(json.dumps(data))
    assert detect_layout(directory) == "modelopt"
    assert_same_draft(directory, eagle3_dir)
    assert "t2d rebuilt from d2t" in inspect_checkpoint(directory).notes
    data["eagle_config"]["use_mtp_layernorm"] = True
    (directory / "config.json").write_text(json.dumps(data))
    with pytest.raises(Eagle3Error, match="describes another draft than EAGLE-3's one layer"):
        read_checkpoint(directory)


def test_a_speculators_draft_must_say_how_its_residual_is_normed(tmp_path: Path, target_dir: Path, eagle3_dir: Path) -> None:
    out = convert_draft(eagle3_dir, "speculators", tmp_path / "spec", target_config=read_target_config(target_dir), target_name="t").output_dir
    config = json.loads((out / "config.json").read_text())
    del config["norm_before_residual"]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(Eagle3Error, match="norm_before_residual is absent"):
        read_checkpoint(out)
    config["norm_before_residual"] = True
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(Eagle3Error, match="norm_before_residual is on"):
        read_checkpoint(out)


def test_unwritable_values_are_refused(tmp_path: Path, eagle3_dir: Path, target_dir: Path) -> None:
    with pytest.raises(Eagle3Error, match="verifier.name_or_path.*pass --target-model"):
        convert_draft(eagle3_dir, "speculators", tmp_path / "spec")
    config, state = draft_state(target_dir)
    config = type(config)(**{**config.__dict__, "fc_norm": True})
    state.update({f"fc_norm.{index}.weight": torch.ones(config.target_hidden_size) for index in range(3)})
    normed = save_checkpoint(tmp_path / "normed", state, config)
    with pytest.raises(Eagle3Error, match="ModelOpt's layout has no fc_norm"):
        convert_draft(normed, "modelopt", tmp_path / "modelopt")
    assert not any(path.name.startswith(".modelopt") or path.name == "modelopt" for path in tmp_path.iterdir())  # nothing half-written
    spec = convert_draft(normed, "speculators", tmp_path / "spec", target_config=read_target_config(target_dir), target_name="t")
    assert json.loads((spec.output_dir / "config.json").read_text())["fc_norm"] is True
    assert_same_draft(normed, spec.output_dir)


def test_a_folder_of_no_layout_names_what_it_found_and_what_each_needs(tmp_path: Path) -> None:
    directory = tmp_path / "medusa"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"architectures": ["MedusaModel"], "medusa_num_heads": 4}))
    save_file({"medusa_head.0.weight": torch.zeros(2, 2)}, directory / "model.safetensors")
    with pytest.raises(Eagle3Error) as error:
        convert_draft(directory, "eagle3", tmp_path / "out")
    report = inspect_checkpoint(directory)
    assert report.problems[0] == str(error.value)
    assert str(error.value).startswith(
        f"{directory} matches no known EAGLE-3 draft layout (found architectures [\"MedusaModel\"], "
        "config keys ['architectures', 'medusa_num_heads'], files ['config.json', 'model.safetensors']); each layout needs — eagle3: "
    )
    assert all(f"{name}: config.json with" in report.problems[0] for name in ("eagle3", "eagle", "angelslim", "speculators", "modelopt"))


def test_convert_cli_and_inspect_show_the_layout(tmp_path: Path, eagle3_dir: Path, target_dir: Path) -> None:
    result = runner.invoke(app, ["convert", str(eagle3_dir), "--to", "speculators", "-o", str(tmp_path / "spec"),
                                 "--target-model", str(target_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "spec")
    verifier = json.loads((tmp_path / "spec" / "config.json").read_text())["speculators_config"]["verifier"]
    assert verifier["name_or_path"] == str(target_dir.resolve())
    again = runner.invoke(app, ["convert", str(eagle3_dir), "--to", "speculators", "-o", str(tmp_path / "spec")])
    assert again.exit_code == 1 and "already exists" in again.stderr
    shown = runner.invoke(app, ["inspect", str(tmp_path / "spec"), "--target-model", str(target_dir)])
    assert shown.exit_code == 0, shown.output
    assert "vLLM speculators" in shown.stdout


def test_inspect_warns_about_settings_that_lower_acceptance(tmp_path: Path, eagle3_dir: Path, target_dir: Path) -> None:
    config_path = eagle3_dir / "config.json"
    data = json.loads(config_path.read_text())
    target = read_target_config(target_dir)
    data.update(max_position_embeddings=target["max_position_embeddings"] // 2, rope_theta=data["rope_theta"] * 2, head_dim=32,
                num_attention_heads=2, num_key_value_heads=1)
    config_path.write_text(json.dumps(data))
    save_file({**load_file(eagle3_dir / "model.safetensors")}, eagle3_dir / "model.safetensors")
    report = inspect_checkpoint(eagle3_dir, target_config=target)
    assert report.problems == []
    assert [warning.split(" ")[0] for warning in report.warnings] == ["max_position_embeddings", "rope", "head_dim", "num_attention_heads", "num_key_value_heads"]


def test_serve_hands_vllm_a_converted_draft_only_when_it_needs_one(tmp_path: Path, target_dir: Path, eagle3_dir: Path) -> None:
    from eagle3cli.config import ServeConfig
    from eagle3cli.serving.launcher import served_draft

    eagle_original(tmp_path / "eagle", target_dir)
    for model, converted in ((str(tmp_path / "eagle"), True), (str(eagle3_dir), False), ("org/published-draft", False)):
        config = ServeConfig(target_model=str(target_dir), speculative_config={"method": "eagle3", "model": model, "num_speculative_tokens": 3})
        with served_draft(config, tmp_path / "logs") as served:
            assert served.speculative_config["num_speculative_tokens"] == 3
            assert (served.speculative_config["model"] != model) == converted
            if converted:
                assert detect_layout(Path(served.speculative_config["model"])) == "eagle3"
        if converted:
            assert not Path(served.speculative_config["model"]).exists()  # the conversion is removed afterwards


def test_init_draft_takes_any_layout(tmp_path: Path, target_dir: Path) -> None:
    from eagle3cli.training.draft_setup import init_vocab_map, init_weights, load_init_draft

    config, state = eagle_original(tmp_path / "eagle", target_dir)
    source = load_init_draft(tmp_path / "eagle", config, read_target_config(target_dir))
    weights = init_weights(source)
    assert all(torch.equal(weights[key], state[key].float()) for key in state if key not in ("d2t", "t2d"))
    vocab_map = init_vocab_map(source)
    assert torch.equal(vocab_map.d2t, state["d2t"]) and torch.equal(vocab_map.t2d, state["t2d"])


def test_init_draft_without_an_embedding_shares_the_targets_and_warns_only_without_one(
    tmp_path: Path, target_dir: Path, eagle3_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from eagle3cli.training.draft_setup import load_init_draft

    config, _, _ = read_checkpoint(eagle3_dir)
    embed_tokens = torch.randn(config.vocab_size, config.hidden_size)
    with caplog.at_level("WARNING"):
        source = load_init_draft(eagle3_dir, config, read_target_config(target_dir), embed_tokens)
    assert "has no embed_tokens.weight" not in caplog.text
    assert source.embed_tokens.weight.data_ptr() == embed_tokens.data_ptr()  # shared, not copied
    with caplog.at_level("WARNING"):
        load_init_draft(eagle3_dir, config, read_target_config(target_dir))
    assert "has no embed_tokens.weight" in caplog.text


def test_modelopt_drops_an_all_zero_d2t_and_gets_it_back(tmp_path: Path, target_dir: Path) -> None:
    config, state = draft_state(target_dir, draft_vocab_size=VOCAB_SIZE)  # the full vocabulary: d2t is all zeros
    del state["embed_tokens.weight"]
    full = save_checkpoint(tmp_path / "full", state, config)
    modelopt = convert_draft(full, "modelopt", tmp_path / "modelopt").output_dir
    assert not {"d2t", "t2d"} & load_file(modelopt / "model.safetensors").keys()  # as ModelOpt writes it
    assert_same_draft(full, convert_draft(modelopt, "eagle3", tmp_path / "back").output_dir)


def test_vllm_numbered_ids_alone_are_enough(tmp_path: Path, eagle3_dir: Path) -> None:
    data = json.loads((eagle3_dir / "config.json").read_text())
    del data["eagle_config"]
    (eagle3_dir / "config.json").write_text(json.dumps(data))
    report = inspect_checkpoint(eagle3_dir)
    assert report.layout == "eagle" and report.problems == [] and report.config.aux_layer_ids == (1, 3, 6)


def test_convert_never_writes_over_its_source(tmp_path: Path, eagle3_dir: Path) -> None:
    for output in (tmp_path, eagle3_dir, eagle3_dir / "inner"):
        with pytest.raises(Eagle3Error, match="holds or is inside the source"):
            convert_draft(eagle3_dir, "modelopt", output, overwrite=True)
    assert detect_layout(eagle3_dir) == "eagle3"
