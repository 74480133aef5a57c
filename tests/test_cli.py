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
