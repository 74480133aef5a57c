"""``eagle3 dump-hidden``: flags and config file into the library call, errors, a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders.dump_data import write_chat_records
from eagle3cli.cli.main import app
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.dump import runner as dump_runner

runner = CliRunner()
FINISHED = dump_runner.DumpSummary(
    output_dir=Path("out"), world_size=1, rank=0, num_shards=2, num_shards_resumed=0, num_shards_written=2,
    num_tokens_written=1234, num_truncated=0, elapsed_s=1.0,
    manifest=dict(aux_layer_ids=[2, 16, 29], sglang_layer_ids=[1, 15, 28], num_shards=2, num_samples=7,
                  num_tokens=1234, num_skipped_without_loss=0, num_bytes=10**6),
)


def test_flags_override_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    received: list[DumpHiddenConfig] = []

    def fake_dump(config: DumpHiddenConfig, **_: object) -> dump_runner.DumpSummary:
        received.append(config)
        return FINISHED

    monkeypatch.setattr(dump_runner, "dump_hidden", fake_dump)
    path = tmp_path / "dump.yaml"
    path.write_text("data: chats.jsonl\ntarget_model: org/target\noutput_dir: out\nmax_length: 4096\nshard_size: 64\n")
    args = [
        "dump-hidden", "--config", str(path), "--max-length", "1024", "--chat-template", "qwen3", "--dtype", "float16",
        "--batch-tokens", "8192", "--draft-config", "draft.json", "--device", "cpu", "--num-samples", "10", "--overwrite",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "7 / 1234" in result.output
    assert received == [
        DumpHiddenConfig(
            data="chats.jsonl", target_model="org/target", output_dir="out", max_length=1024, shard_size=64,
            chat_template="qwen3", dtype="float16", batch_tokens=8192, draft_config="draft.json", device="cpu",
            num_samples=10, overwrite=True,
        )
    ]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--backend", "sglang", "backend 'sglang' is not supported; use hf (transformers) or vllm"),
        ("--dtype", "int8", "flag --dtype"),
        ("--device", "tpu", "flag --device"),
    ],
)
def test_bad_choices_are_one_error_line(flag: str, value: str, message: str) -> None:
    result = runner.invoke(app, ["dump-hidden", "--data", "d.jsonl", "--target-model", "t", "--output-dir", "o", flag, value])
    assert result.exit_code == 1
    assert message in result.output


def test_a_run_prints_the_estimate_and_summary_and_a_rerun_resumes(qwen3_target_dir: Path, tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 5)
    args = [
        "dump-hidden", "--data", str(data), "--target-model", str(qwen3_target_dir), "--output-dir", str(tmp_path / "out"),
        "--chat-template", "qwen3", "--dtype", "float32", "--shard-size", "2", "--draft-vocab-size", "32",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 shard(s): 0 already done, 3 to dump (5 samples" in result.output
    assert "estimated output" in result.output and "bytes/token" in result.output
    assert "samples / tokens" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_samples"] == 5 and manifest["draft_vocab_size"] == 32

    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert "3 already done, 0 to dump" in rerun.output
