"""``train offline --stream``: training starts on the shards a running ``dump-hidden`` has
finished, later shards join the next epoch, the last epoch waits for the whole dump (or fails
on one that stopped), and a resume continues each epoch on the shards it started with. The dump
really runs (in a thread of this process), paused after its first shards until the test lets
it go on, so what each epoch sees is fixed."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from builders.training import cycle_target_dir, single_thread_torch, write_cycle_data
from eagle3cli.config import DumpHiddenConfig, OfflineTrainConfig
from eagle3cli.dump import open_dump, open_growing_dump
from eagle3cli.dump.manifest import read_manifest, record_file
from eagle3cli.dump.runner import DumpProgress, dump_hidden
from eagle3cli.errors import Eagle3Error
from eagle3cli.training.offline import train_offline
from eagle3cli.training.reporting import read_metrics

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)
NUM_RECORDS, SHARD_SIZE = 24, 4  # six shards


def dump_config(data: Path, target: Path, output: Path) -> DumpHiddenConfig:
    return DumpHiddenConfig(data=str(data), target_model=str(target), output_dir=str(output), chat_template="qwen3",
                            dtype="float32", draft_vocab_size=64, device="cpu", shard_size=SHARD_SIZE)


def train_config(target: Path, dump: Path, output: Path, **overrides) -> OfflineTrainConfig:
    fields = dict(target_model=str(target), train_hidden=str(dump), output_dir=str(output), stream=True, precision="fp32",
                  per_device_batch_size=4, num_epochs=2, ttt_length=2, learning_rate=3e-3, log_steps=1,
                  save_steps=1, save_total_limit=None)
    return OfflineTrainConfig(**{**fields, **overrides})


class PausedDump:
    """``dump-hidden`` in a thread, held after it has computed ``pause_after`` samples (before
    it hands that shard to its writer) until :meth:`finish`."""

    def __init__(self, config: DumpHiddenConfig, pause_after: int) -> None:
        self.gate, self.paused = threading.Event(), threading.Event()
        self.error: BaseException | None = None

        def on_progress(progress: DumpProgress) -> None:
            if progress.num_samples >= pause_after and not self.gate.is_set():
                self.paused.set()
                assert self.gate.wait(timeout=600)

        def run() -> None:
            try:
                dump_hidden(config, on_progress=on_progress)
            except BaseException as error:  # reported by finish()
                self.error = error
                self.paused.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.gate.set()
        self.thread.join(timeout=600)
        assert not self.thread.is_alive() and self.error is None, self.error


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def paused_dump(root: Path, target: Path, name: str) -> PausedDump:
    """A dump of the training records held with shards 0-1 written (shard 2 waits in the pause)."""
    if not (root / "train.jsonl").is_file():
        write_cycle_data(root / "train.jsonl", NUM_RECORDS)
    running = PausedDump(dump_config(root / "train.jsonl", target, root / name), pause_after=3 * SHARD_SIZE)
    assert running.paused.wait(timeout=600) and running.error is None, running.error
    wait_for(record_file(root / name, 1))
    return running


def logged_messages(logger_name: str) -> tuple[list[str], logging.Handler]:
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return records, handler


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A streamed run of 2 epochs: the dump paused with shards 0-1 written, epoch 0 on them,
    the dump then finished, epoch 1 (the last) on all six shards."""
    root = tmp_path_factory.mktemp("stream")
    target = cycle_target_dir(tmp_path_factory)
    dump_dir = root / "dump"
    running = paused_dump(root, target, "dump")
    during = read_manifest(dump_dir)
    partial = open_growing_dump(dump_dir)
    seen = {"manifest": during, "shards": [record.index for record in partial.shards], "planned": partial.planned_num_samples}

    def on_step(step: int, total: int) -> None:
        if step == 2:  # epoch 0 (8 samples, 2 steps) is done: let the dump finish before epoch 1 starts
            running.finish()

    records, handler = logged_messages("eagle3cli.training")
    try:
        summary = train_offline(train_config(target, dump_dir, root / "draft"), on_step=on_step)
    finally:
        logging.getLogger("eagle3cli.training").removeHandler(handler)
        running.finish()
    return {"root": root, "target": target, "dump": dump_dir, "seen": seen, "summary": summary, "log": records}


@pytest.mark.slow
def test_training_starts_on_the_finished_shards_and_later_ones_join_the_next_epoch(streamed) -> None:
    seen = streamed["seen"]
    assert seen["manifest"]["complete"] is False and seen["manifest"]["planned"] == {"num_shards": 6, "num_records": NUM_RECORDS}
    assert seen["shards"] == [0, 1] and seen["planned"] == NUM_RECORDS
    assert "epoch 0 trains on 8 samples (of 24 planned)" in streamed["log"]
    assert "epoch 1 trains on 24 samples (of 24 planned)" in streamed["log"]
    summary = streamed["summary"]
    # the schedule is sized for 2 epochs of the planned 24 samples; epoch 0 had 8 of them
    assert summary.total_steps == 12 and summary.global_step == 2 + 6
    draft = streamed["root"] / "draft"
    states = {path.parent.name: json.loads(path.read_text()) for path in (draft / "checkpoints").glob("*/trainer_state.json")}
    assert [index for index, _ in states["step-00000002"]["epoch_data"]] == [0, 1]
    assert [index for index, _ in states["step-00000003"]["epoch_data"]] == [0, 1, 2, 3, 4, 5]
    assert states["step-00000003"]["epoch"] == 1 and "step-00000009" not in states
    assert open_dump(streamed["dump"]).num_samples == NUM_RECORDS  # the dump finished normally beside training


@pytest.mark.slow
def test_a_streamed_run_resumed_in_its_first_epoch_keeps_that_epochs_samples(streamed, tmp_path: Path) -> None:
    """Resumed at step 1 with the dump complete by now: epoch 0 still trains on shards 0-1 only."""
    resumed = tmp_path / "resumed"
    shutil.copytree(streamed["root"] / "draft", resumed)
    for path in (resumed / "checkpoints").glob("step-*"):
        if path.name != "step-00000001":
            shutil.rmtree(path)
    shutil.rmtree(resumed / "final")
    train_offline(train_config(streamed["target"], streamed["dump"], resumed))
    assert [record["step"] for record in read_metrics(resumed)] == list(range(1, 9))
    uninterrupted = load_file(streamed["root"] / "draft" / "final" / "model.safetensors")
    again = load_file(resumed / "final" / "model.safetensors")
    assert all(torch.equal(uninterrupted[key], again[key]) for key in uninterrupted)


@pytest.mark.slow
def test_streaming_a_finished_dump_trains_as_without_stream(streamed, tmp_path: Path) -> None:
    target, dump = streamed["target"], streamed["dump"]
    train_offline(train_config(target, dump, tmp_path / "stream", max_steps=3))
    train_offline(train_config(target, dump, tmp_path / "plain", max_steps=3, stream=False))
    streamed_final = load_file(tmp_path / "stream" / "final" / "model.safetensors")
    plain_final = load_file(tmp_path / "plain" / "final" / "model.safetensors")
    assert all(torch.equal(streamed_final[key], plain_final[key]) for key in plain_final)


@pytest.mark.slow
def test_the_last_epoch_waits_for_the_dump_to_finish(tmp_path_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.training.offline import GrowingDumpSource

    monkeypatch.setattr(GrowingDumpSource, "POLL_S", 0.05)
    target = cycle_target_dir(tmp_path_factory)
    running = paused_dump(tmp_path, target, "dump")
    timer = threading.Timer(1.0, running.gate.set)  # the dump goes on while training waits
    timer.start()
    records, handler = logged_messages("eagle3cli.training")
    try:
        summary = train_offline(train_config(target, tmp_path / "dump", tmp_path / "draft", num_epochs=1))
    finally:
        logging.getLogger("eagle3cli.training").removeHandler(handler)
        running.finish()
    assert any("the last epoch waits for dump-hidden to finish" in record and "(2 of 6 shards written)" in record for record in records)
    assert "epoch 0 trains on 24 samples (of 24 planned)" in records and summary.global_step == 6


@pytest.mark.slow
def test_a_dump_that_stopped_before_the_last_epoch_is_named(tmp_path_factory, tmp_path: Path) -> None:
    target = cycle_target_dir(tmp_path_factory)
    running = paused_dump(tmp_path, target, "dump")
    try:
        shutil.copytree(tmp_path / "dump", tmp_path / "stopped")  # what a killed dump leaves: nobody holds its lock
    finally:
        running.finish()
    with pytest.raises(Eagle3Error, match=r"the dump in .*stopped stopped before finishing \(2 of 6 shards\)"):
        train_offline(train_config(target, tmp_path / "stopped", tmp_path / "draft", num_epochs=1))


def test_stream_refuses_a_folder_without_a_started_dump_and_a_sample_prefix(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="holds no dump-hidden run of this eagle3 version that has started writing shards"):
        open_growing_dump(tmp_path)
    with pytest.raises(ValueError, match="num_samples takes a prefix of a finished dump"):
        train_config(tmp_path, tmp_path, tmp_path / "out", num_samples=4)


@pytest.mark.slow
def test_a_resumed_epoch_whose_shards_were_rewritten_is_refused(streamed, tmp_path: Path) -> None:
    """Resumed at step 1 (epoch 0 on shards 0-1) after shard 1 was rewritten: named, not trained on."""
    resumed, dump = tmp_path / "resumed", tmp_path / "dump"
    shutil.copytree(streamed["root"] / "draft", resumed)
    for path in (resumed / "checkpoints").glob("step-*"):
        if path.name != "step-00000001":
            shutil.rmtree(path)
    shutil.copytree(streamed["dump"], dump)
    manifest = read_manifest(dump)  # the dump is complete: its manifest lists the shards
    manifest["shards"][1]["sha256"] = "0" * 64
    (dump / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Eagle3Error, match=r"shard\(s\) \[1\] of .*dump, which this run trains on, are gone or were rewritten"):
        train_offline(train_config(streamed["target"], dump, resumed))


class FewSamples:
    """A growing source whose epoch holds 3 samples."""

    num_samples, planned_num_samples = 3, 24

    def batch(self, indices, device):
        raise AssertionError("no batch is read")

    def next_epoch(self, previous, *, last):
        return [[0, "sha"]]

    def use_epoch(self, key) -> None:
        pass


def test_an_epoch_smaller_than_one_optimizer_step_is_refused() -> None:
    from types import SimpleNamespace

    from eagle3cli.config import TrainHyperParameters
    from eagle3cli.training.checkpoints import TrainerState
    from eagle3cli.training.trainer import EpochCursor

    config = TrainHyperParameters(per_device_batch_size=1, gradient_accumulation_steps=4)
    accelerator = SimpleNamespace(is_main_process=True, num_processes=1, process_index=0)
    cursor = EpochCursor(FewSamples(), TrainerState(), config, accelerator, micro_batches_per_epoch=24)
    with pytest.raises(Eagle3Error, match=r"epoch 0 would train on 3 samples, fewer than one optimizer step \(4 micro-batches of 1\)"):
        cursor.enter_epoch([[0, "sha"]])


@pytest.mark.slow
def test_a_dump_that_finishes_while_the_last_epoch_checks_on_it_is_read_complete(
    tmp_path_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dump ends between two looks of the last epoch (it writes its manifest complete, then
    lets go of its folder): the epoch trains on the complete dump instead of calling it stopped."""
    from eagle3cli import outputs

    target = cycle_target_dir(tmp_path_factory)
    running = paused_dump(tmp_path, target, "dump")

    def finishes_now(directory: Path) -> bool:
        running.finish()
        return False

    monkeypatch.setattr(outputs, "in_use", finishes_now)
    try:
        summary = train_offline(train_config(target, tmp_path / "dump", tmp_path / "draft", num_epochs=1))
    finally:
        running.finish()
    assert summary.global_step == 6  # one epoch over all 24 samples
