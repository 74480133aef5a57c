"""Real processes: a dump killed with SIGKILL and rerun equals a one-shot dump; a 2-process
``torchrun`` dump (gloo, CPU) equals a 1-process dump."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from builders.dump_data import dump_config, write_chat_records
from eagle3cli.dump import HiddenStateDump, open_dump
from eagle3cli.dump.runner import dump_hidden

NUM_RECORDS = 16
# Dumps the config given as JSON, slowed down after each batch so the test can kill it mid-run.
SLOW_DUMP = """
import sys, time
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.dump.runner import dump_hidden
dump_hidden(DumpHiddenConfig.model_validate_json(sys.argv[1]), on_progress=lambda progress: time.sleep(0.1))
"""


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_records(tmp_path_factory.mktemp("data") / "chats.jsonl", NUM_RECORDS)


def assert_same_dump(actual: HiddenStateDump, expected: HiddenStateDump, *, atol: float = 0.0) -> None:
    """Same samples in the same order with the same states; same shards and vocab map."""
    assert [(s["num_samples"], s["num_tokens"]) for s in actual.manifest["shards"]] == [
        (s["num_samples"], s["num_tokens"]) for s in expected.manifest["shards"]
    ]
    pairs = list(zip(actual.iter_samples(), expected.iter_samples(), strict=True))
    for got, want in pairs:
        assert (got.sample_index, got.sample_id) == (want.sample_index, want.sample_id)
        assert torch.equal(got.input_ids, want.input_ids) and torch.equal(got.loss_mask, want.loss_mask)
        torch.testing.assert_close(got.aux_hidden, want.aux_hidden, atol=atol, rtol=0)
        torch.testing.assert_close(got.last_hidden, want.last_hidden, atol=atol, rtol=0)
    assert torch.equal(actual.vocab_map().d2t, expected.vocab_map().d2t)
    assert torch.equal(actual.vocab_map().t2d, expected.vocab_map().t2d)


def wait_for_records(shards: Path, process: subprocess.Popen[bytes], *, at_least: int, timeout_s: float = 120) -> int:
    """Wait until ``at_least`` shard records exist (the process must still be running)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = len(list(shards.glob("shard-*.json")))
        if count >= at_least:
            return count
        if process.poll() is not None:
            pytest.fail(f"the dump ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("the dump wrote no shards in time")


def test_a_dump_killed_mid_run_and_rerun_equals_a_one_shot_dump(qwen3_target_dir: Path, chats: Path, tmp_path: Path) -> None:
    config = dump_config(chats, qwen3_target_dir, tmp_path / "killed", shard_size=2, batch_tokens=64)
    process = subprocess.Popen([sys.executable, "-c", SLOW_DUMP, config.model_dump_json()], stderr=subprocess.PIPE)
    try:
        wait_for_records(tmp_path / "killed" / "shards", process, at_least=2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["complete"] is False

    rerun = dump_hidden(config)
    assert rerun.num_shards_resumed >= 2 and rerun.num_shards_written == rerun.num_shards - rerun.num_shards_resumed
    dump_hidden(config.model_copy(update={"output_dir": tmp_path / "one_shot"}))
    resumed = open_dump(tmp_path / "killed", verify_checksums=True)
    assert sorted(sample.sample_id for sample in resumed) == sorted(f"rec-{i}" for i in range(NUM_RECORDS))
    assert_same_dump(resumed, open_dump(tmp_path / "one_shot"))


def test_two_torchrun_processes_equal_one_process(qwen3_target_dir: Path, chats: Path, tmp_path: Path) -> None:
    config = dump_config(chats, qwen3_target_dir, tmp_path / "two", shard_size=3)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "eagle3cli", "dump-hidden", "--data", config.data, "--target-model", config.target_model,
        "--output-dir", config.output_dir, "--chat-template", config.chat_template, "--dtype", "float32",
        "--device", "cpu", "--shard-size", "3", "--draft-vocab-size", "64",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("dump-hidden →") == 1  # only process 0 prints the summary
    dump_hidden(config.model_copy(update={"output_dir": tmp_path / "one"}))
    two = open_dump(tmp_path / "two", verify_checksums=True)
    assert two.num_shards == 6
    assert_same_dump(two, open_dump(tmp_path / "one"), atol=1e-6)
