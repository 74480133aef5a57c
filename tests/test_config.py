"""Config files + flag overrides → one validated stage config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eagle3cli.config import DataCheckConfig
from eagle3cli.configfile import resolve_config, write_resolved_config
from eagle3cli.errors import Eagle3Error


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.yaml", "data: a.jsonl\ntarget_model: tok\nmax_length: 512\nchat_template: qwen3\n"),
        ("c.toml", 'data = "a.jsonl"\ntarget_model = "tok"\nmax_length = 512\nchat_template = "qwen3"\n'),
        ("c.json", '{"data": "a.jsonl", "target_model": "tok", "max_length": 512, "chat_template": "qwen3"}'),
    ],
)
def test_file_formats_give_the_same_config(tmp_path: Path, name: str, text: str) -> None:
    config = resolve_config(DataCheckConfig, write(tmp_path / name, text), {})
    assert config == DataCheckConfig(data="a.jsonl", target_model="tok", max_length=512, chat_template="qwen3")


def test_flags_override_file_and_none_flags_do_not(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: a.jsonl\ntarget_model: tok\nmax_length: 512\nshow: 3\n")
    config = resolve_config(DataCheckConfig, path, {"max_length": 64, "show": None, "data": "b.jsonl"})
    assert (config.data, config.max_length, config.show, config.target_model) == ("b.jsonl", 64, 3, "tok")


def test_unknown_key_names_the_closest_valid_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: a.jsonl\ntarget_model: tok\nmax_lenght: 512\n")
    with pytest.raises(Eagle3Error) as error:
        resolve_config(DataCheckConfig, path, {})
    assert str(error.value) == f"unknown key 'max_lenght' in config file {path} — did you mean 'max_length'?"


def test_invalid_value_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match=r"flag --max-length: Input should be greater than 0"):
        resolve_config(DataCheckConfig, None, {"data": "a", "target_model": "t", "max_length": 0})


def test_invalid_value_names_the_file_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: a\ntarget_model: t\nchat_template: gemma\n")
    with pytest.raises(Eagle3Error, match=rf"key 'chat_template' in {path}: Input should be 'qwen3', 'hunyuan' or 'auto'"):
        resolve_config(DataCheckConfig, path, {})


def test_missing_required_value_names_the_flag() -> None:
    with pytest.raises(Eagle3Error, match=r"--data: Field required"):
        resolve_config(DataCheckConfig, None, {"target_model": "t"})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.yaml", "data: [unclosed\n", "is not valid YAML"),
        ("c.yaml", "- a\n- b\n", "must hold a mapping"),
        ("c.ini", "x=1\n", "unknown suffix"),
    ],
)
def test_bad_config_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(Eagle3Error, match=message):
        resolve_config(DataCheckConfig, write(tmp_path / name, text), {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="does not exist"):
        resolve_config(DataCheckConfig, tmp_path / "nope.yaml", {})


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = DataCheckConfig(data="a.jsonl", target_model="tok", system_prompt="Be brief.", num_samples=5)
    path = write_resolved_config(config, tmp_path / "out")
    assert path == tmp_path / "out" / "config.json"
    assert json.loads(path.read_text())["system_prompt"] == "Be brief."
    assert resolve_config(DataCheckConfig, path, {}) == config


def test_every_field_has_a_description() -> None:
    for name, field in DataCheckConfig.model_fields.items():
        assert field.description, name


def test_a_rule_across_fields_is_reported_in_its_own_words() -> None:
    from eagle3cli.config import BenchConfig

    with pytest.raises(Eagle3Error) as error:
        resolve_config(BenchConfig, None, {"base_model_path": "t", "model_id": "m", "eagle_model_path": "d", "num_gpus_per_model": 2})
    assert str(error.value) == "invalid configuration: --num-gpus-total must be a multiple of --num-gpus-per-model"
