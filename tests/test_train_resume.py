"""Resume: a run SIGKILLed after a save ends, once rerun, with the weights of an uninterrupted run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from builders.training import cycle_target_dir, single_thread_torch, write_cycle_data
from eagle3cli.config import OnlineTrainConfig
from eagle3cli.training.online import train_online
from eagle3cli.training.reporting import read_metrics

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)
SETTINGS = dict(
    chat_template="qwen3", precision="fp32", per_device_batch_size=4, num_epochs=5, ttt_length=2,
    learning_rate=3e-3, hidden_noise_std=0.05, save_steps=4, save_total_limit=2, log_steps=4, draft_vocab_size=64,
)


def online_config(target: Path, data: Path, output: Path, **overrides) -> OnlineTrainConfig:
    return OnlineTrainConfig(target_model=str(target), train_data=str(data), output_dir=str(output), **{**SETTINGS, **overrides})


def cli_command(config: OnlineTrainConfig) -> list[str]:
    """The same run as ``config``, as an ``eagle3 train online`` command line."""
    command = [sys.executable, "-m", "eagle3cli", "train", "online"]
    for key in ("target_model", "train_data", "output_dir", *SETTINGS):
        command += [f"--{key.replace('_', '-')}", str(getattr(config, key))]
    return command


def kill_after_first_checkpoint(config: OnlineTrainConfig) -> None:
    output = Path(config.output_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same kernels as this single-thread process
    process = subprocess.Popen(cli_command(config), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    checkpoint = output / "checkpoints" / "step-00000004"
    while not checkpoint.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.is_dir(), "the run ended or stalled before its first checkpoint"
    assert not (output / "final").exists(), "the run finished before it could be killed"


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_weights(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = cycle_target_dir(tmp_path_factory)
    data = tmp_path / "train.jsonl"
    write_cycle_data(data, 48)  # 12 micro-batches per epoch: the resumed run crosses epochs
    reference = online_config(target, data, tmp_path / "reference")
    interrupted = online_config(target, data, tmp_path / "interrupted")
    train_online(reference)
    kill_after_first_checkpoint(interrupted)
    with caplog.at_level(logging.INFO, logger="eagle3cli"):
        train_online(interrupted)
    assert "resumed from step" in caplog.text

    expected = load_file(tmp_path / "reference" / "final" / "model.safetensors")
    actual = load_file(tmp_path / "interrupted" / "final" / "model.safetensors")
    for key, tensor in expected.items():
        torch.testing.assert_close(actual[key], tensor, rtol=0, atol=0, msg=key)
    train_steps = lambda run: [r["step"] for r in read_metrics(tmp_path / run) if r["kind"] == "train"]  # noqa: E731
    assert train_steps("interrupted") == train_steps("reference") == list(range(4, 61, 4))
    kept = sorted(path.name for path in (tmp_path / "interrupted" / "checkpoints").iterdir())
    assert kept == ["step-00000056", "step-00000060"]


def two_step_run(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> OnlineTrainConfig:
    """A finished 2-step run in ``tmp_path / "run"`` (a checkpoint per step); its config."""
    target = cycle_target_dir(tmp_path_factory)
    data = tmp_path / "train.jsonl"
    write_cycle_data(data, 8)
    config = online_config(target, data, tmp_path / "run", max_steps=2, save_steps=1, log_steps=1)
    train_online(config)
    return config


def test_rerun_resumes_and_no_resume_starts_fresh(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = two_step_run(tmp_path_factory, tmp_path)
    with caplog.at_level(logging.INFO, logger="eagle3cli"):
        assert train_online(config.model_copy(update={"log_steps": 2})).global_step == 2
        assert "resumed from step 2" in caplog.text
        caplog.clear()
        train_online(config.model_copy(update={"resume": False}))
    assert "resumed" not in caplog.text
    assert [record["step"] for record in read_metrics(tmp_path / "run")] == [1, 2]


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from eagle3cli.errors import Eagle3Error

    config = two_step_run(tmp_path_factory, tmp_path)
    record = tmp_path / "run" / "config.json"
    old = {key: value for key, value in json.loads(record.read_text()).items() if key not in ("fc_norm", "hidden_noise_scale")}
    record.write_text(json.dumps(old))  # written by a version without these settings
    with caplog.at_level(logging.INFO, logger="eagle3cli"):
        assert train_online(config).global_step == 2
    assert "resumed from step 2" in caplog.text
    record.write_text(json.dumps(old))
    with pytest.raises(Eagle3Error, match="fc_norm: false -> true"):
        train_online(config.model_copy(update={"fc_norm": True}))


def test_a_path_written_another_way_is_the_same_setting_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Older versions kept path settings as typed ("runs/x/", "./runs/x"); they are the same path."""
    import json

    from eagle3cli.errors import Eagle3Error
    from eagle3cli.training import checkpoints
    from eagle3cli.training.trainer import check_resumed_settings

    monkeypatch.setattr(checkpoints, "complete_checkpoints", lambda output_dir: [output_dir / "checkpoints" / "step-00000002"])

    config = online_config(tmp_path / "target", tmp_path / "data.jsonl", tmp_path / "run", draft_config="drafts/small.json")
    (tmp_path / "run").mkdir()
    record = config.model_dump(mode="json")
    for spelling in ("./drafts/small.json", "drafts//small.json"):
        (tmp_path / "run" / "config.json").write_text(json.dumps({**record, "draft_config": spelling}))
        check_resumed_settings(config, tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(json.dumps({**record, "draft_config": "drafts/big.json"}))
    with pytest.raises(Eagle3Error, match='draft_config: "drafts/big.json" -> "drafts/small.json"'):
        check_resumed_settings(config, tmp_path / "run")
