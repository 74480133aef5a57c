"""``eagle3 inspect``: a valid checkpoint prints its summary; a broken one lists every problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders.models import build_tiny_target
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from eagle3cli.cli.main import app
from eagle3cli.draft.checkpoint import inspect_checkpoint, save_draft_model
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map

VOCAB_SIZE = 256
DRAFT_VOCAB_SIZE = 64


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    build_tiny_target("qwen3", VOCAB_SIZE, num_hidden_layers=8).save_pretrained(tmp_path / "target")
    return tmp_path / "target"


@pytest.fixture
def draft_dir(tmp_path: Path, target_dir: Path) -> Path:
    """A valid draft checkpoint for ``target_dir`` (capture layers 2, 4, 5)."""
    model = Eagle3DraftModel(derive_draft_config(read_target_config(target_dir), draft_vocab_size=DRAFT_VOCAB_SIZE))
    vocab_map = build_vocab_map(torch.arange(VOCAB_SIZE), DRAFT_VOCAB_SIZE)
    model.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return save_draft_model(tmp_path / "draft", model)


def edit_weights(draft_dir: Path, edit) -> None:
    weights = draft_dir / "model.safetensors"
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, weights)


def run_inspect(*args: str):
    return CliRunner().invoke(app, ["inspect", *args])


def reported_problems(stderr: str) -> list[str]:
    return [line.removeprefix("- ") for line in stderr.splitlines() if line.startswith("- ")]


def test_valid_checkpoint_prints_the_summary(draft_dir: Path, target_dir: Path) -> None:
    result = run_inspect(str(draft_dir), "--target-model", str(target_dir))
    assert result.exit_code == 0, result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.stdout.splitlines() if line.count("│") == 3}
    # fc 64*192 + norms 4*64 + q/k/v/o (64+32+32)*128 + 64*64 + MLP 3*128*64 + lm_head 64*64
    assert rows["parameters"] == f"{64 * 192 + 4 * 64 + 128 * 128 + 64 * 64 + 3 * 128 * 64 + 64 * 64:,}"
    assert rows["vocab / draft vocab"] == "256 / 64"
    assert rows["hidden / target hidden"] == "64 / 64"
    assert rows["capture layers (vLLM)"] == "2, 4, 5"
    assert rows["capture layers (SGLang)"] == "1, 3, 4"
    assert rows["embed_tokens"] == "omitted (the target's is used)"
    assert rows["target check"] == "passed"
    assert result.stderr == ""


def test_missing_d2t(draft_dir: Path) -> None:
    edit_weights(draft_dir, lambda tensors: tensors.pop("d2t"))
    result = run_inspect(str(draft_dir))
    assert result.exit_code == 1
    assert reported_problems(result.stderr) == ["missing tensor 'd2t'"]
    assert result.stdout == ""


def test_misnamed_weight(draft_dir: Path) -> None:
    def rename(tensors: dict) -> None:
        tensors["midlayer.mlp.up_proj.weights"] = tensors.pop("midlayer.mlp.up_proj.weight")

    edit_weights(draft_dir, rename)
    result = run_inspect(str(draft_dir))
    assert result.exit_code == 1
    assert reported_problems(result.stderr) == [
        "missing tensor 'midlayer.mlp.up_proj.weight'",
        "unknown tensor 'midlayer.mlp.up_proj.weights' (did you mean 'midlayer.mlp.up_proj.weight'?)",
    ]


def test_wrong_fc_shape(draft_dir: Path) -> None:
    edit_weights(draft_dir, lambda tensors: tensors.update({"fc.weight": torch.zeros(64, 128)}))
    result = run_inspect(str(draft_dir))
    assert result.exit_code == 1
    assert reported_problems(result.stderr) == ["tensor 'fc.weight' has shape [64, 128], expected [64, 192]"]
    assert "invalid draft checkpoint" in result.stderr and "(1 problem):" in result.stderr


def test_mismatched_target_and_config(tmp_path: Path, draft_dir: Path) -> None:
    build_tiny_target("llama", 300, num_hidden_layers=4).save_pretrained(tmp_path / "other")
    config_path = draft_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = [2, 4, 5]
    config_path.write_text(json.dumps(config))
    assert reported_problems(run_inspect(str(draft_dir)).stderr) == [
        "config.json: capture layers disagree: eagle_aux_hidden_state_layer_ids [2, 4, 5] (vLLM) should be "
        "eagle_config.eagle_aux_hidden_state_layer_ids [2, 4, 5] (SGLang) plus one"
    ]
    config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = [1, 3, 4]
    config_path.write_text(json.dumps(config))
    result = run_inspect(str(draft_dir), "--target-model", str(tmp_path / "other"))
    assert result.exit_code == 1
    assert reported_problems(result.stderr) == [
        "vocab_size 256 != the target's vocab_size 300",
        "capture layer ids [2, 4, 5] must be < 4, the target's number of layers (vLLM numbering)",
    ]


def test_library_reports_problems_without_raising(tmp_path: Path) -> None:
    report = inspect_checkpoint(tmp_path / "nothing")
    assert report.config is None
    assert report.problems == [
        f"{tmp_path / 'nothing' / 'config.json'} does not exist — pass a draft checkpoint folder holding config.json",
        f"{tmp_path / 'nothing' / 'model.safetensors'} does not exist — "
        "a draft checkpoint folder holds config.json and model.safetensors",
    ]


def test_missing_target_is_a_one_line_error(draft_dir: Path, tmp_path: Path) -> None:
    result = run_inspect(str(draft_dir), "--target-model", str(tmp_path / "no-such-target"))
    assert result.exit_code == 1
    assert result.stderr == f"error: no such folder: {tmp_path / 'no-such-target'} — check the path, or pass a hub id like org/name\n"
