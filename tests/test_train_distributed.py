"""Two real processes (torchrun, gloo, CPU): the run completes, only process 0 logs and writes,
and the first step's loss equals a one-process run over the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.training import cycle_target_dir, single_thread_torch, torchrun_eagle3, write_cycle_data
from eagle3cli.config import OnlineTrainConfig
from eagle3cli.training.online import train_online
from eagle3cli.training.reporting import read_metrics

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    target = cycle_target_dir(tmp_path_factory)
    write_cycle_data(tmp_path / "train.jsonl", 16)
    write_cycle_data(tmp_path / "eval.jsonl", 5, first_index=100)  # uneven across the two processes
    common = [
        "--target-model", str(target), "--train-data", str(tmp_path / "train.jsonl"),
        "--eval-data", str(tmp_path / "eval.jsonl"), "--chat-template", "qwen3", "--precision", "fp32",
        "--ttt-length", "3", "--learning-rate", "3e-3", "--log-steps", "1", "--max-steps", "3", "--draft-vocab-size", "64",
    ]
    output = torchrun_eagle3(["train", "online", *common, "--output-dir", str(tmp_path / "two"), "--per-device-batch-size", "2"])
    assert output.count("step 00001/00003") == 1 and output.count("eval 00003/00003") == 1
    assert output.count("best draft") == 1  # the summary table: process 0 only

    one = OnlineTrainConfig(
        target_model=str(target), train_data=str(tmp_path / "train.jsonl"), eval_data=str(tmp_path / "eval.jsonl"),
        output_dir=str(tmp_path / "one"), chat_template="qwen3", precision="fp32", ttt_length=3, learning_rate=3e-3,
        log_steps=1, max_steps=3, draft_vocab_size=64, per_device_batch_size=4,
    )
    train_online(one)
    two_logs, one_logs = read_metrics(tmp_path / "two"), read_metrics(tmp_path / "one")
    assert [record["step"] for record in two_logs] == [record["step"] for record in one_logs] == [1, 2, 3, 3]
    assert two_logs[0]["loss"] == pytest.approx(one_logs[0]["loss"], rel=1e-6)
    assert two_logs[0]["num_trained_tokens"] == one_logs[0]["num_trained_tokens"]
    assert two_logs[-1]["sim_accept_len"] == pytest.approx(one_logs[-1]["sim_accept_len"], rel=1e-4)  # eval
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("world_size, status", [("2", 0), ("1", 3)])
def test_a_rank_of_a_several_process_run_exits_at_once_with_its_output_flushed(world_size: str, status: int) -> None:
    """After a successful run a torchrun rank skips the interpreter's teardown (where a gloo thread
    could abort it) with status 0; a single process returns to its caller."""
    import os
    import subprocess
    import sys

    code = ("import sys; print('trained', end=''); sys.stderr.write('logged');"
            "from eagle3cli.cli.train import finish_run; finish_run(); sys.exit(3)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "WORLD_SIZE": world_size})
    assert (result.returncode, result.stdout, result.stderr) == (status, "trained", "logged")
