"""The CLI shell: help, version, errors, config precedence into the library call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eagle3cli import __version__, datacheck
from eagle3cli.cli.main import app
from eagle3cli.config import DataCheckConfig
from eagle3cli.errors import Eagle3Error

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "inspect"):
        assert command in result.output
    assert "--install-completion" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"eagle3 {__version__}\n")


def test_help_imports_no_torch_or_transformers() -> None:
    code = (
        "import sys; from eagle3cli.cli.main import app; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'safetensors') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_show_completion_prints_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eagle3cli", "--show-completion", "bash"],
        capture_output=True, text=True, env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout


def test_data_check_passes_the_resolved_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    received: list[DataCheckConfig] = []

    def fake_check(config: DataCheckConfig, **_: object) -> datacheck.DataCheckReport:
        received.append(config)
        return datacheck.DataCheckReport(num_read=1)

    monkeypatch.setattr(datacheck, "check_dataset", fake_check)
    path = tmp_path / "check.yaml"
    path.write_text("data: from-file.jsonl\ntarget_model: tok\nmax_length: 100\nshow: 2\n")
    result = runner.invoke(app, ["data", "check", "--config", str(path), "--max-length", "50", "--chat-template", "qwen3"])
    assert result.exit_code == 0, result.output
    assert received == [
        DataCheckConfig(data="from-file.jsonl", target_model="tok", max_length=50, show=2, chat_template="qwen3")
    ]


def test_target_model_is_the_tokenizer_source(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[DataCheckConfig] = []
    monkeypatch.setattr(datacheck, "check_dataset", lambda config, **_: received.append(config) or datacheck.DataCheckReport(num_read=1))
    result = runner.invoke(app, ["data", "check", "--data", "d.jsonl", "--target-model", "some/model"])
    assert result.exit_code == 0, result.output
    assert received[0].target_model == "some/model"


def test_user_error_is_one_red_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(config: DataCheckConfig, **_: object) -> None:
        raise Eagle3Error("dataset d.jsonl line 3: invalid JSON", hint="fix or --on-bad-record skip")

    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    monkeypatch.setattr(datacheck, "check_dataset", failing)
    result = runner.invoke(app, ["data", "check", "--data", "d.jsonl", "--tokenizer", "t"])
    assert result.exit_code == 1
    assert result.stderr == "error: dataset d.jsonl line 3: invalid JSON — fix or --on-bad-record skip\n"
    assert result.stdout == ""


def test_debug_env_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(config: DataCheckConfig, **_: object) -> None:
        raise Eagle3Error("boom")

    monkeypatch.setenv("EAGLE3_DEBUG", "1")
    monkeypatch.setattr(datacheck, "check_dataset", failing)
    result = runner.invoke(app, ["data", "check", "--data", "d.jsonl", "--tokenizer", "t"])
    assert result.exit_code == 1
    assert isinstance(result.exception, Eagle3Error)


def test_unknown_flag_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    result = runner.invoke(app, ["data", "check", "--data", "d.jsonl", "--tokenizer", "t", "--format", "csv"])
    assert result.exit_code == 1
    assert "flag --format: Input should be 'auto', 'sharegpt', 'ultrachat' or 'openai'" in result.stderr


COMMAND_CONFIGS = {
    ("data", "check"): "DataCheckConfig",
    ("serve",): "ServeConfig",
    ("sample",): "SampleConfig",
    ("dump-hidden",): "DumpHiddenConfig",
    ("train", "online"): "OnlineTrainConfig",
    ("train", "offline"): "OfflineTrainConfig",
    ("inspect",): "InspectConfig",
    ("bench",): "BenchConfig",
    ("convert",): "ConvertConfig",
    ("convert-gguf",): "ConvertGgufConfig",
}


def wide_help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


def test_root_help_lists_commands_in_pipeline_order() -> None:
    rows = [line.split()[1] for line in wide_help().splitlines() if line.startswith("│ ") and not line.startswith("│ -")]
    assert rows == ["data", "serve", "sample", "dump-hidden", "train", "inspect", "bench", "convert", "convert-gguf"]


@pytest.mark.parametrize("command", COMMAND_CONFIGS, ids=" ".join)
def test_help_shows_every_default_from_the_config_and_no_bool_metavar(command: tuple[str, ...]) -> None:
    import eagle3cli.config as configs

    text = wide_help(*command)
    assert "<bool>" not in text
    model = getattr(configs, COMMAND_CONFIGS[command])
    for name, field in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name in ("draft_dir", "gguf_file", "extra_args"):
            continue  # positional arguments
        assert flag in text, f"{flag} missing from {' '.join(command)} --help"
        if field.is_required() or field.default_factory is not None or field.default is None or name.startswith("no_"):
            continue  # nothing to show: required, an empty list, "not set", or an AngelSlim-style off flag
        if isinstance(field.default, bool):
            shown = flag[2:] if field.default else f"no-{flag[2:]}"
            assert f"[default: {shown}]" in text, flag
        else:
            assert f"[default: {field.default}]" in text, f"{flag} default {field.default} not shown"


def test_choice_options_complete_their_values() -> None:
    import os
    import shutil

    eagle3 = shutil.which("eagle3", path=os.path.dirname(sys.executable))
    assert eagle3 is not None
    environment = {**os.environ, "_EAGLE3_COMPLETE": "complete_bash", "COMP_WORDS": "eagle3 bench --mode ", "COMP_CWORD": "3"}
    result = subprocess.run([eagle3], capture_output=True, text=True, env=environment)
    assert result.stdout.split() == ["eagle", "baseline", "both"]
    environment |= {"COMP_WORDS": "eagle3 train offline --lr-scheduler c", "COMP_CWORD": "4"}
    assert subprocess.run([eagle3], capture_output=True, text=True, env=environment).stdout.split() == ["constant", "cosine"]


def test_sample_takes_the_api_key_from_openai_api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from eagle3cli.serving import sampler

    received = []

    def fake_sample(config, **_):
        received.append(config.api_key.get_secret_value() if config.api_key else None)
        raise Eagle3Error("stop here")

    monkeypatch.setattr(sampler, "sample", fake_sample)
    monkeypatch.setattr(sampler, "estimate_num_records", lambda *args: 1)
    args = ["sample", "--data", "d.jsonl", "--output-dir", str(tmp_path)]
    runner.invoke(app, args, env={"OPENAI_API_KEY": "from-env"})
    runner.invoke(app, [*args, "--api-key", "from-flag"], env={"OPENAI_API_KEY": "from-env"})
    (tmp_path / "c.yaml").write_text("api_key: from-file\n")
    runner.invoke(app, [*args, "--config", str(tmp_path / "c.yaml")], env={"OPENAI_API_KEY": "from-env"})
    runner.invoke(app, args, env={"OPENAI_API_KEY": None})
    assert received == ["from-env", "from-flag", "from-file", None]


def test_serve_on_all_interfaces_warns_about_the_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.serving import launcher

    monkeypatch.setattr(launcher, "serve", lambda config, **_: None)
    result = runner.invoke(app, ["serve", "--target-model", "m", "--host", "0.0.0.0"])
    assert result.exit_code == 0 and "--host 0.0.0.0 exposes the servers to the network without an API key" in result.stderr
    result = runner.invoke(app, ["serve", "--target-model", "m", "--host", "0.0.0.0", "--", "--api-key", "secret"])
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert "warning" not in runner.invoke(app, ["serve", "--target-model", "m"]).stderr


class Resolved(Exception):
    """Raised by the patched ``resolve_config`` to stop a command once its config is known."""

    def __init__(self, config: object) -> None:
        self.config = config


# Values no generic rule can invent (a pattern, a JSON text) and the other fields some need to validate.
SPECIAL_VALUES = {"server_urls": ["http://a:1", "http://b:2"], "device": "cpu", "speculative_config": '{"method": "eagle3"}',
                  "temperature_mix": "0:1,0.5:2", "max_gpu_memory": "70GiB", "extra_args": ["--enforce-eager"]}
COMPANIONS = {
    ("sample", "num_answers"): {"temperature": 0.5}, ("sample", "backend"): {"target_model": "t"},
    ("sample", "target_model"): {"backend": "hf"},
    ("bench", "speculative_draft_tensor_parallel_size"): {"backend": "vllm"}, ("bench", "num_gpus_per_model"): {"num_gpus_total": 2},
}
POSITIONAL = {"draft_dir", "gguf_file", "extra_args"}


def non_default(name: str, field) -> object:
    """A valid value of config field ``name`` that differs from its default."""
    from eagle3cli.cli.options import choices, cli_type, field_default

    default = field_default(field)
    if name in SPECIAL_VALUES:
        return SPECIAL_VALUES[name]
    values = choices(field.annotation)
    kind = cli_type(field.annotation)
    if values is not None:
        # bench's pytorch is AngelSlim's name of hf, and pytorch_tts a clear refusal
        return next(value for value in values if value not in (default, "pytorch", "pytorch_tts"))
    if kind is bool:
        return not default
    if isinstance(default, float):
        return default / 2 if default else 0.25
    if isinstance(default, int) or kind is int:
        return (default or 2) + 1
    if "float" in str(field.annotation):
        return 0.25
    return f"{name}-value"


def as_flags(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value or name.startswith("no_") else ["--no-" + flag[2:]]
    if isinstance(value, list):
        return [part for item in value for part in (flag, str(item))]
    return [flag, str(value)]


@pytest.mark.parametrize("command", COMMAND_CONFIGS, ids=" ".join)
def test_every_setting_means_the_same_as_a_flag_and_as_a_config_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """For each field: ``--field-name VALUE`` and ``field_name: VALUE`` in --config give one config,
    and the value arrives (the flag is not silently another setting, nor the key ignored)."""
    import importlib
    import json

    import eagle3cli.config as configs
    from eagle3cli import configfile
    from eagle3cli.cli.options import field_default

    def capture(model, config_file, overrides, fallbacks=None):
        raise Resolved(configfile.resolve_config(model, config_file, overrides, fallbacks))

    for module in ("bench", "convert", "data", "dump", "inspect", "sample", "serve", "train"):
        monkeypatch.setattr(importlib.import_module(f"eagle3cli.cli.{module}"), "resolve_config", capture)
    model = getattr(configs, COMMAND_CONFIGS[command])
    required = {name: non_default(name, field) for name, field in model.model_fields.items() if field.is_required()}
    required |= {"eagle_model_path": "draft"} if command == ("bench",) else {}

    def resolve(values: dict[str, object], via_file: bool) -> object:
        positional = [str(values[name]) for name in ("draft_dir", "gguf_file") if name in values]
        rest = {name: value for name, value in values.items() if name not in POSITIONAL}
        extra = ["--", *values.get("extra_args", [])] if command == ("serve",) else []
        if via_file:
            path = tmp_path / "c.json"
            path.write_text(json.dumps(rest), encoding="utf-8")
            args = [*command, *positional, "--config", str(path), *extra]
        else:
            args = [*command, *positional, *[part for name, value in rest.items() for part in as_flags(name, value)], *extra]
        result = runner.invoke(app, args)
        assert isinstance(result.exception, Resolved), f"{' '.join(args)}: {result.output}{result.exception!r}"
        return result.exception.config

    command_name = command[-1] if command[0] != "data" else "data"
    for name, field in model.model_fields.items():
        value = non_default(name, field)
        values = required | COMPANIONS.get((command_name, name), {}) | {name: value}
        from_flags, from_file = resolve(values, via_file=False), resolve(values, via_file=True)
        assert from_flags == from_file, name
        got = getattr(from_flags, name)
        got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
        assert got is not None and got != field_default(field), f"{' '.join(command)} --{name} did not arrive: {got!r}"
