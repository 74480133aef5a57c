"""Every failure a user can cause or fix is one red line (exit 1), per class and command:
an output folder that cannot be written, a full disk while writing, a truncated target,
a corrupt checkpoint on resume, a torn metrics line, a non-UTF-8 config file, an OS error
the library did not foresee. Runs through the CLI on a tiny Qwen3 target."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from builders.dump_data import write_chat_records
from builders.training import single_thread_torch
from eagle3cli.cli.main import app
from eagle3cli.draft.checkpoint import save_draft_model
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, qwen3_target_dir: Path) -> dict[str, Path]:
    """A tiny target, chat data, a complete dump of it and a random draft."""
    root = tmp_path_factory.mktemp("failures")
    data = write_chat_records(root / "chats.jsonl", 6)
    result = runner.invoke(app, dump_args(data, qwen3_target_dir, root / "dump"))
    assert result.exit_code == 0, result.output
    config = read_target_config(qwen3_target_dir)
    torch.manual_seed(0)
    draft = Eagle3DraftModel(derive_draft_config(config, draft_vocab_size=64))
    vocab_map = build_vocab_map(torch.arange(config["vocab_size"]), 64)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return {"root": root, "target": qwen3_target_dir, "data": data, "dump": root / "dump",
            "draft": save_draft_model(root / "draft", draft)}


def dump_args(data: Path, target: Path, output: Path, *extra: str) -> list[str]:
    return ["dump-hidden", "--data", str(data), "--target-model", str(target), "--output-dir", str(output),
            "--chat-template", "qwen3", "--dtype", "float32", "--device", "cpu", "--shard-size", "3",
            "--draft-vocab-size", "64", *extra]


def offline_args(world: dict[str, Path], output: Path, *extra: str, target: Path | None = None) -> list[str]:
    return ["train", "offline", "--target-model", str(target or world["target"]), "--train-hidden", str(world["dump"]),
            "--output-dir", str(output), "--precision", "fp32", "--ttt-length", "2", "--max-steps", "2", *extra]


def online_args(world: dict[str, Path], output: Path, *extra: str, target: Path | None = None) -> list[str]:
    return ["train", "online", "--target-model", str(target or world["target"]), "--train-data", str(world["data"]),
            "--output-dir", str(output), "--chat-template", "qwen3", "--draft-vocab-size", "64", "--precision", "fp32",
            "--ttt-length", "2", "--max-steps", "2", *extra]


def bench_args(world: dict[str, Path], output: Path, *extra: str, target: Path | None = None) -> list[str]:
    return ["bench", "--base-model-path", str(target or world["target"]), "--eagle-model-path", str(world["draft"]),
            "--model-id", "m", "--question-end", "1", "--max-new-token", "4", "--temperature", "0",
            "--chat-template", "qwen3", "--device", "cpu", "--output-dir", str(output), *extra]


def sample_args(world: dict[str, Path], output: Path) -> list[str]:
    return ["sample", "--data", str(world["data"]), "--output-dir", str(output), "--server-url", "http://127.0.0.1:9"]


def one_error_line(result, *fragments: str) -> None:
    """Exit 1, no traceback, and stderr ends with one ``error:`` line holding every fragment
    (status lines printed before the failure may precede it)."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr and lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], result.stderr


COMMANDS = {
    "dump-hidden": lambda world, output: dump_args(world["data"], world["target"], output),
    "train offline": offline_args,
    "train online": online_args,
    "bench": bench_args,
    "sample": sample_args,
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_folder_that_cannot_be_written_fails_before_any_work(
    command: str, world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle3cli.target import loading

    def no_model_load(*args, **kwargs):
        raise AssertionError("the target was loaded before the output folder was checked")

    monkeypatch.setattr(loading, "load_pretrained", no_model_load)
    (tmp_path / "a-file").write_text("not a folder")
    output = tmp_path / "a-file" / "out"
    one_error_line(runner.invoke(app, COMMANDS[command](world, output)), f"--output-dir {output} cannot be written")


def test_serve_checks_its_log_folder_first(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = runner.invoke(app, ["serve", "--target-model", "m", "--log-dir", str(tmp_path / "a-file" / "logs")])
    one_error_line(result, "--log-dir", "cannot be written")


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_forced_dump_is_one_line(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.dump import writer

    monkeypatch.setattr(writer, "write_shard", full_disk)
    result = runner.invoke(app, dump_args(world["data"], world["target"], tmp_path / "dump", "--force"))
    one_error_line(result, "could not write", "shard-", "the disk is full", "rerun the same command")
    assert not list((tmp_path / "dump" / "shards").glob("*.safetensors"))  # nothing half-written left as a shard


def test_a_full_disk_while_checkpointing_is_one_line(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import accelerate.checkpointing

    def torch_save_on_a_full_disk(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")  # what torch.save raised on a full disk

    monkeypatch.setattr(accelerate.checkpointing, "save", torch_save_on_a_full_disk)
    result = runner.invoke(app, offline_args(world, tmp_path / "run"))
    one_error_line(result, "could not write", ".step-00000002.tmp", "basic_ios::clear")


def truncated_copy(target: Path, destination: Path) -> Path:
    shutil.copytree(target, destination)
    weights = destination / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return destination


@pytest.mark.parametrize("command", ["dump-hidden", "train offline", "train online", "bench"])
def test_a_truncated_target_is_one_line(command: str, world: dict[str, Path], tmp_path: Path) -> None:
    target = truncated_copy(world["target"], tmp_path / "target")
    args = {
        "dump-hidden": lambda: dump_args(world["data"], target, tmp_path / "out"),
        "train offline": lambda: offline_args(world, tmp_path / "out", target=target),
        "train online": lambda: online_args(world, tmp_path / "out", target=target),
        "bench": lambda: bench_args(world, tmp_path / "out", target=target),
    }[command]()
    one_error_line(runner.invoke(app, args), f"the target's weights in {target} cannot be read", "truncated or corrupt")


def test_a_corrupt_optimizer_state_resumes_from_the_checkpoint_before(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run, "--save-steps", "1", "--max-steps", "3")).exit_code == 0
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert [path.name for path in checkpoints] == ["step-00000002", "step-00000003"]
    (checkpoints[-1] / "training_state" / "optimizer.bin").write_bytes(b"not a torch file")
    result = runner.invoke(app, offline_args(world, run, "--save-steps", "1", "--max-steps", "3"))
    assert result.exit_code == 0, result.output
    assert "step-00000003 cannot be read" in result.stderr and "resumed from step 2" in result.stderr
    for path in sorted((run / "checkpoints").glob("step-*")):
        (path / "training_state" / "optimizer.bin").write_bytes(b"")
    result = runner.invoke(app, offline_args(world, run, "--save-steps", "1", "--max-steps", "3"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: none of the 2 checkpoint(s)")
    assert "--no-resume" in result.stderr


def test_a_torn_last_metrics_line_is_dropped_on_resume(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run, "--log-steps", "1")).exit_code == 0
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "st')
    result = runner.invoke(app, offline_args(world, run, "--log-steps", "1"))
    assert result.exit_code == 0, result.output
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_a_non_utf8_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_bytes(b"data: caf\xe9.jsonl\n")
    one_error_line(runner.invoke(app, ["data", "check", "--config", str(config)]), f"config file {config} is not UTF-8", "save it as UTF-8")


def test_an_unforeseen_os_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli import datacheck

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/chats.jsonl")

    monkeypatch.setattr(datacheck, "check_dataset", denied)
    result = runner.invoke(app, ["data", "check", "--data", "d", "--target-model", "t"])
    one_error_line(result, "Permission denied: /data/chats.jsonl", "check the permissions")


def test_a_nonexistent_local_path_is_no_such_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/target", "./target", str(tmp_path / "target")):
        one_error_line(runner.invoke(app, ["inspect", name]), f"no such folder: {name}")
        result = runner.invoke(app, ["bench", "--base-model-path", name, "--mode", "baseline", "--model-id", "m"])
        one_error_line(result, f"no such folder: {name}")


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 256 kB file system (tmpfs), where the machine allows mounting one (root in a
    privileged container); skipped elsewhere — the monkeypatched tests above cover the class."""
    import subprocess

    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_really_full_disk_during_dump_and_checkpointing_is_one_line(world: dict[str, Path], tiny_disk: Path) -> None:
    result = runner.invoke(app, dump_args(world["data"], world["target"], tiny_disk / "dump", "--force", "--dtype", "float32"))
    one_error_line(result, "could not write", "the disk is full")
    shutil.rmtree(tiny_disk / "dump")
    result = runner.invoke(app, offline_args(world, tiny_disk / "run"))
    one_error_line(result, "could not write", "the disk is full")
