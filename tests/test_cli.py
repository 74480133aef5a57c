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
