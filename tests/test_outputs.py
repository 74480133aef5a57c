"""Nothing lost, nothing stale, files people can share: resumes that refuse changed settings,
output folders owned by one command and locked while written, leftovers pruned, skipped and
edited input records noticed, shards verified, and file modes that follow the umask."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders.dump_data import write_chat_records
from eagle3cli.cli.main import app
from test_failures import dump_args, no_debug, offline_args, one_error_line, online_args, single_thread, world  # noqa: F401

runner = CliRunner()


@pytest.mark.parametrize(
    ("flags", "changed"),
    [
        (["--per-device-batch-size", "2"], "per_device_batch_size: 1 -> 2"),
        (["--gradient-accumulation-steps", "2"], "gradient_accumulation_steps: 1 -> 2"),
        (["--num-epochs", "3"], "num_epochs: 1 -> 3"),
        (["--seed", "5"], "seed: 0 -> 5"),
        (["--max-steps", "1"], "max_steps: 2 -> 1"),
    ],
)
def test_resuming_with_changed_settings_is_refused_and_keeps_the_run_record(
    flags: list[str], changed: str, world: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run)).exit_code == 0
    record = (run / "config.json").read_text()
    final = (run / "final" / "model.safetensors").read_bytes()
    one_error_line(runner.invoke(app, offline_args(world, run, *flags)), f"holds a run made with other settings ({changed})",
                   "--no-resume", "old values")
    assert (run / "config.json").read_text() == record
    assert (run / "final" / "model.safetensors").read_bytes() == final
    assert runner.invoke(app, offline_args(world, run, *flags, "--no-resume")).exit_code == 0


def test_settings_that_only_change_reporting_may_change_on_resume(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run)).exit_code == 0
    result = runner.invoke(app, offline_args(world, run, "--log-steps", "1", "--save-total-limit", "3"))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["log_steps"] == 1
    monkeypatch.chdir(tmp_path)  # the same run and dump, written as relative paths
    args = offline_args(world, Path("run"), "--log-steps", "1", "--save-total-limit", "3")
    args[args.index("--train-hidden") + 1] = os.path.relpath(world["dump"], tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_resuming_on_edited_training_data_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 6)
    run = tmp_path / "run"
    args = online_args(world, run)
    args[args.index("--train-data") + 1] = str(data)
    assert runner.invoke(app, args).exit_code == 0
    write_chat_records(data, 6, seed=1)  # same path and ids, other conversations
    one_error_line(runner.invoke(app, args), "training data (sha256 of the samples)", "--no-resume")


def test_train_and_dump_refuse_each_others_folders(world: dict[str, Path], tmp_path: Path) -> None:
    one_error_line(runner.invoke(app, offline_args(world, world["dump"])),
                   f"--output-dir {world['dump']} holds the output of eagle3 dump-hidden; eagle3 train will not write into it")
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run)).exit_code == 0
    one_error_line(runner.invoke(app, dump_args(world["data"], world["target"], run)),
                   f"--output-dir {run} holds the output of eagle3 train; eagle3 dump-hidden will not write into it")


def test_a_folder_in_use_by_another_run_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "dump"
    output.mkdir()
    with (output / ".eagle3-output.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242, eagle3 dump-hidden, since 2026-11-28 10:00:00\n")
        held.flush()
        result = runner.invoke(app, dump_args(world["data"], world["target"], output))
        one_error_line(result, f"--output-dir {output} is in use by another eagle3 run (pid 4242, eagle3 dump-hidden")
    assert runner.invoke(app, dump_args(world["data"], world["target"], output)).exit_code == 0  # lock released


def test_leftovers_of_a_killed_save_are_pruned(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run, "--save-steps", "1")).exit_code == 0
    checkpoints = run / "checkpoints"
    (checkpoints / ".step-00000003.tmp" / "training_state").mkdir(parents=True)
    (checkpoints / "step-00000009").mkdir()  # no trainer_state.json: never completed
    (run / ".best.tmp").mkdir()
    assert runner.invoke(app, offline_args(world, run, "--save-steps", "1")).exit_code == 0
    assert sorted(path.name for path in checkpoints.iterdir()) == ["step-00000001", "step-00000002"]
    assert not (run / ".best.tmp").exists()


def test_dump_reports_skipped_bad_records_in_summary_and_manifest(world: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    lines = world["data"].read_text().splitlines()
    data.write_text("\n".join([lines[0], "{not json", lines[1], '{"id": "x", "conversations": []}', *lines[2:]]) + "\n")
    result = runner.invoke(app, dump_args(data, world["target"], tmp_path / "dump", "--on-bad-record", "skip"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dump" / "manifest.json").read_text())
    assert manifest["bad_records_skipped"]["count"] == 2 and manifest["num_samples"] == 6
    assert "malformed input records skipped" in result.stdout and "2 (" in result.stdout


def test_data_check_of_an_empty_source_fails(tmp_path: Path, world: dict[str, Path]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    result = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "empty.jsonl"), "--target-model", str(world["target"]),
                                 "--chat-template", "qwen3"])
    one_error_line(result, "holds no usable record (0 read, 0 skipped)")


def test_a_data_file_edited_in_place_is_dumped_again(world: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text(world["data"].read_text())
    output = tmp_path / "dump"
    assert runner.invoke(app, dump_args(data, world["target"], output)).exit_code == 0
    records = [json.loads(line) for line in data.read_text().splitlines()]
    records[4]["conversations"][1]["value"] = "An edited answer, same record id."
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    result = runner.invoke(app, dump_args(data, world["target"], output))
    assert result.exit_code == 0, result.output
    assert "2 shard(s): 1 already done, 1 to dump" in result.stderr  # shard 1 holds record 4
    from eagle3cli.dump import open_dump

    dump = open_dump(output, verify_checksums=True)
    assert dump.read_sample(4).sample_id == "rec-4"


def test_a_corrupt_shard_is_caught_before_training_unless_verification_is_off(world: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    dump = tmp_path / "dump"
    shutil.copytree(world["dump"], dump)
    shard = dump / "shards" / "shard-000000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # same size, other bytes: only the sha256 can tell
    shard.write_bytes(bytes(data))
    args = offline_args(world, tmp_path / "run")
    args[args.index("--train-hidden") + 1] = str(dump)
    one_error_line(runner.invoke(app, args), f"shard {shard} fails its sha256 checksum")
    result = runner.invoke(app, [*args, "--no-verify-shards"])
    assert result.exit_code == 0, result.output


def modes(directory: Path) -> dict[str, int]:
    return {str(path.relative_to(directory)): stat.S_IMODE(path.stat().st_mode)
            for path in directory.rglob("*") if ".eagle3-output" not in path.name}


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(umask: int, file_mode: int, folder_mode: int, world: dict[str, Path], tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        assert runner.invoke(app, dump_args(world["data"], world["target"], tmp_path / "dump")).exit_code == 0
        args = offline_args(world, tmp_path / "run")
        args[args.index("--train-hidden") + 1] = str(tmp_path / "dump")
        assert runner.invoke(app, args).exit_code == 0
    finally:
        os.umask(previous)
    found = modes(tmp_path / "dump") | {f"run/{name}": mode for name, mode in modes(tmp_path / "run").items()}
    assert "run/final/model.safetensors" in found and "shards/shard-000000.safetensors" in found
    for name, mode in found.items():
        expected = folder_mode if (tmp_path / name).is_dir() or (tmp_path / "dump" / name).is_dir() else file_mode
        assert mode == expected, f"{name}: {oct(mode)} != {oct(expected)}"


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_resumes_a_run_it_would_train_the_same_way(
    native: bool, world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run made with --precision fp32 resumes under auto where auto means fp32 here, and is
    refused (naming the setting) where auto would switch it to bf16."""
    from eagle3cli.training import accelerate_setup

    run = tmp_path / "run"
    assert runner.invoke(app, offline_args(world, run)).exit_code == 0  # --precision fp32
    monkeypatch.setattr(accelerate_setup.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(accelerate_setup, "native_bf16", lambda device: native)
    result = runner.invoke(app, offline_args(world, run, "--precision", "auto"))
    if native:
        one_error_line(result, 'holds a run made with other settings (precision: "fp32" -> "auto")', "--no-resume")
    else:
        assert result.exit_code == 0, result.output
