"""``eagle3 sample`` on the command line: flags and config file into the library, summary, exit codes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders.fake_openai import Drop, FakeOpenAIServer
from eagle3cli.cli.main import app
from eagle3cli.config import SampleConfig
from eagle3cli.serving import sampler

runner = CliRunner()


def test_flags_override_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    received: list[SampleConfig] = []
    monkeypatch.setattr(sampler, "sample", lambda config, **_: received.append(config) or sampler.SampleSummary())
    config_file = tmp_path / "sample.yaml"
    config_file.write_text("data: from-file.jsonl\noutput_dir: out\nmax_tokens: 100\nconcurrency: 8\n")
    result = runner.invoke(app, [
        "sample", "--config", str(config_file), "--max-tokens", "64", "--temperature-mix", "0:4,0.7:1",
        "--server-url", "http://a:1", "--server-url", "http://b:2", "--enable-thinking", "--drop-truncated",
        "--api-key", "sk-1", "--format", "sharegpt", "--shard-size", "10", "--request-timeout", "30",
    ])
    assert result.exit_code == 0, result.output
    (config,) = received
    assert (config.data, config.output_dir, config.max_tokens, config.concurrency) == ("from-file.jsonl", Path("out"), 64, 8)
    assert config.temperature_mix == {0.0: 4.0, 0.7: 1.0} and config.temperature is None
    assert config.server_urls == ["http://a:1", "http://b:2"]
    assert (config.enable_thinking, config.drop_truncated, config.format, config.shard_size) == (True, True, "sharegpt", 10)
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-1"
    assert config.request_timeout == 30


def test_temperature_and_a_mix_together_are_refused() -> None:
    result = runner.invoke(app, ["sample", "--data", "x.jsonl", "--output-dir", "o", "--temperature", "0.5",
                                 "--temperature-mix", "0:1"])
    assert result.exit_code == 1
    assert "give temperature or temperature_mix, not both" in result.output


def test_a_malformed_mix_names_the_flag() -> None:
    result = runner.invoke(app, ["sample", "--data", "x.jsonl", "--output-dir", "o", "--temperature-mix", "0:1,hot"])
    assert result.exit_code == 1
    assert "flag --temperature-mix" in result.output and "'hot' is not TEMPERATURE:WEIGHT" in result.output


def test_a_run_prints_its_summary(tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "conversations": [{"from": "human", "value": f"q{i}"}]}) + "\n" for i in range(3)))
    with FakeOpenAIServer() as server:
        result = runner.invoke(app, ["sample", "--data", str(data), "--output-dir", str(tmp_path / "out"),
                                     "--server-url", server.url])
    assert result.exit_code == 0, result.output
    assert "records done" in result.output and "tiny-target on 1 server(s)" in result.output
    assert json.loads((tmp_path / "out" / "config.json").read_text())["server_urls"] == [server.url]


def test_a_stopped_run_exits_non_zero_and_says_how_to_resume(tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "conversations": [{"from": "human", "value": "q"}]}) + "\n" for i in range(3)))
    server = FakeOpenAIServer()
    server.behaviour = lambda body, number: threading.Thread(target=server.stop).start() or Drop()
    server.start()
    config_file = tmp_path / "sample.json"
    config_file.write_text(json.dumps({"server_down_timeout": 0.2, "retry_backoff": 0.01}))
    result = runner.invoke(app, ["sample", "--data", str(data), "--output-dir", str(tmp_path / "out"),
                                 "--server-url", server.url, "--config", str(config_file)])
    server.stop()
    assert result.exit_code == 1
    assert "run stopped: no server answered for 0.2 s" in result.output
    assert "rerun the same command to resume" in result.output
