"""``eagle3 data check`` on real files with a locally built Qwen3-family tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eagle3cli.cli.main import app
from eagle3cli.config import DataCheckConfig
from eagle3cli.datacheck import check_dataset

SAMPLE = Path(__file__).parent.parent / "examples" / "data" / "chat_sample.jsonl"
runner = CliRunner()


def assistant_texts(path: Path) -> list[str]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [turn["value"] for record in records for turn in record["conversations"] if turn["from"] == "gpt"]


def test_report_counts_and_masked_text(qwen3_tokenizer_dir: Path) -> None:
    config = DataCheckConfig(data=str(SAMPLE), target_model=str(qwen3_tokenizer_dir), chat_template="qwen3", show=4)
    report = check_dataset(config)
    assert (report.num_read, report.num_skipped, report.num_truncated) == (4, 0, 0)
    assert report.num_tokens == sum(report.lengths) and len(report.lengths) == 4
    masked_text = [text for sample in report.samples for text, masked in sample.segments if masked]
    assert masked_text == [text + "<|im_end|>" for text in assistant_texts(SAMPLE)]
    assert 0 < report.num_loss_tokens < report.num_tokens


def test_truncation_and_percentiles(qwen3_tokenizer_dir: Path) -> None:
    full = check_dataset(DataCheckConfig(data=str(SAMPLE), target_model=str(qwen3_tokenizer_dir), chat_template="qwen3"))
    cut = check_dataset(
        DataCheckConfig(data=str(SAMPLE), target_model=str(qwen3_tokenizer_dir), chat_template="qwen3", max_length=20)
    )
    assert cut.lengths == [min(length, 20) for length in full.lengths]
    assert cut.num_truncated == sum(length > 20 for length in full.lengths)
    ordered = sorted(full.lengths)
    assert full.length_percentiles() == {"p50": ordered[1], "p90": ordered[3], "p99": ordered[3], "p100": ordered[3]}


def test_skip_policy_counts_bad_records(tmp_path: Path, qwen3_tokenizer_dir: Path) -> None:
    data = tmp_path / "mixed.jsonl"
    data.write_text(SAMPLE.read_text() + "{not json\n" + '{"conversations": [{"from": "robot", "value": "x"}]}\n')
    config = DataCheckConfig(data=str(data), target_model=str(qwen3_tokenizer_dir), chat_template="qwen3", on_bad_record="skip")
    report = check_dataset(config)
    assert (report.num_read, report.num_skipped) == (4, 2)
    assert sum(report.skipped_by_reason.values()) == 2


def test_cli_prints_table_and_highlighted_sample(qwen3_tokenizer_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["data", "check", "--data", str(SAMPLE), "--tokenizer", str(qwen3_tokenizer_dir), "--chat-template", "qwen3", "--show", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "records read" in result.stdout and "│ 4" in result.stdout
    assert "sample sharegpt-1" in result.stdout
    assert assistant_texts(SAMPLE)[0][:40] in result.stdout


def test_cli_bad_record_error_names_file_and_line(tmp_path: Path, qwen3_tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    data = tmp_path / "bad.jsonl"
    data.write_text(SAMPLE.read_text() + "{not json\n")
    result = runner.invoke(app, ["data", "check", "--data", str(data), "--tokenizer", str(qwen3_tokenizer_dir), "--chat-template", "qwen3"])
    assert result.exit_code == 1
    assert "bad.jsonl" in result.stderr and "line 5" in result.stderr and "invalid JSON" in result.stderr
