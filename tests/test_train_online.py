"""``train online``: learning on a target that knows its data, outputs, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders.training import cycle_target_dir, single_thread_torch, write_cycle_data
from eagle3cli.cli.main import app
from eagle3cli.config import OnlineTrainConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.training.online import train_online
from eagle3cli.training.reporting import read_metrics

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """One short online run on the cycle target: (target dir, output dir, summary)."""
    target = cycle_target_dir(tmp_path_factory)
    data = tmp_path_factory.mktemp("cycle_data")
    write_cycle_data(data / "train.jsonl", 48)
    write_cycle_data(data / "eval.jsonl", 8, first_index=1000)
    output = tmp_path_factory.mktemp("online") / "run"
    config = OnlineTrainConfig(
        target_model=str(target), train_data=str(data / "train.jsonl"), eval_data=str(data / "eval.jsonl"),
        output_dir=str(output), chat_template="qwen3", precision="fp32", per_device_batch_size=4,
        learning_rate=3e-3, num_epochs=4, ttt_length=3, log_steps=6, eval_steps=24, save_steps=24,
        draft_vocab_size=64, warmup_ratio=0.05, report_to="tensorboard",
    )
    return target, output, train_online(config)


def test_loss_falls_and_acceptance_rises_on_learnable_data(cycle_run) -> None:
    _, output, summary = cycle_run
    train_logs = [record for record in read_metrics(output) if record["kind"] == "train"]
    assert summary.global_step == 48 and len(train_logs) == 8
    assert train_logs[-1]["loss"] < 0.4 * train_logs[0]["loss"]
    assert train_logs[0]["acc@0"] < 0.5 < 0.8 < train_logs[-1]["acc@0"]
    assert summary.eval_metrics["sim_accept_len"] > 2.5
    assert summary.eval_metrics["cond_acc@1"] > 0.7


def test_outputs_best_final_checkpoints_and_tensorboard(cycle_run) -> None:
    target, output, summary = cycle_run
    evals = [record for record in read_metrics(output) if record["kind"] == "eval"]
    assert [record["step"] for record in evals] == [24, 48]
    best = json.loads((output / "best" / "eval_metrics.json").read_text())
    assert best["sim_accept_len"] == max(record["sim_accept_len"] for record in evals) == summary.best_sim_accept_len
    checkpoints = sorted(path.name for path in (output / "checkpoints").iterdir())
    assert checkpoints == ["step-00000024", "step-00000048"]
    assert json.loads((output / "config.json").read_text())["ttt_length"] == 3
    assert list((output / "runs").rglob("events.out.tfevents.*"))
    for draft in (output / "final", output / "best", output / "checkpoints" / "step-00000024"):
        result = CliRunner().invoke(app, ["inspect", str(draft), "--target-model", str(target)])
        assert result.exit_code == 0, result.output
        assert not (draft / "embed_tokens.weight").exists()


def test_cli_builds_the_config_the_library_receives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import eagle3cli.training.online as online

    received = {}

    def fake_train_online(config, *, on_step=None):
        received["config"] = config
        raise Eagle3Error("stop here")

    monkeypatch.setattr(online, "train_online", fake_train_online)
    (tmp_path / "train.yaml").write_text("learning_rate: 0.002\nttt_length: 5\n")
    result = CliRunner().invoke(app, [
        "train", "online", "--target-model", "T", "--train-data", "D", "--output-dir", str(tmp_path / "out"),
        "--config", str(tmp_path / "train.yaml"), "--ttt-length", "6", "--no-resume", "--fsdp",
        "--report-to", "tensorboard", "--per-device-batch-size", "3", "--init-draft", "prev",
    ])
    assert result.exit_code == 1 and "stop here" in result.output
    config = received["config"]
    assert (config.learning_rate, config.ttt_length, config.resume, config.fsdp) == (0.002, 6, False, True)
    assert (config.report_to, config.per_device_batch_size, config.init_draft) == ("tensorboard", 3, Path("prev"))
    assert config.output_dir == tmp_path / "out" and config.loss_decay == 0.8


def test_cli_rejects_bad_hyperparameters() -> None:
    result = CliRunner().invoke(app, ["train", "online", "--target-model", "T", "--train-data", "D", "--output-dir", "O", "--lr-scheduler", "step"])
    assert result.exit_code == 1 and "lr-scheduler" in result.output


def test_draft_config_from_another_target_is_refused(cycle_run, llama_target_dir: Path, tmp_path: Path) -> None:
    from eagle3cli.draft.config_json import write_draft_config
    from eagle3cli.draft.derive import resolve_draft_config
    from eagle3cli.target.spec import read_target_config

    target, _, _ = cycle_run
    other = resolve_draft_config(read_target_config(llama_target_dir))  # another vocabulary size
    write_draft_config(tmp_path / "draft.json", other)
    config = OnlineTrainConfig(target_model=str(target), train_data="unused", output_dir=str(tmp_path / "out"), draft_config=str(tmp_path / "draft.json"))
    with pytest.raises(Eagle3Error, match="vocab_size"):
        train_online(config)


def test_fine_tune_from_a_draft_reuses_its_vocabulary_map(cycle_run, tmp_path: Path) -> None:
    from eagle3cli.draft.checkpoint import load_checkpoint

    target, output, _ = cycle_run
    data = tmp_path / "train.jsonl"
    write_cycle_data(data, 8, first_index=500)
    config = OnlineTrainConfig(
        target_model=str(target), train_data=str(data), output_dir=str(tmp_path / "tuned"), chat_template="qwen3",
        precision="fp32", per_device_batch_size=4, ttt_length=3, max_steps=1, learning_rate=1e-9,
        init_draft=str(output / "final"),  # no --draft-vocab-size: the checkpoint's own (64) is taken
    )
    summary = train_online(config)
    source, tuned = load_checkpoint(output / "final"), load_checkpoint(summary.final_dir)
    assert source.config == tuned.config
    assert (source.d2t == tuned.d2t).all() and (source.t2d == tuned.t2d).all()
    assert (source.fc.weight - tuned.fc.weight).abs().max() < 1e-6
    other = config.model_copy(update={"draft_vocab_size": 80, "output_dir": tmp_path / "other"})
    with pytest.raises(Eagle3Error, match=r"does not fit this run's draft config \(.*draft vocab 64 vs 80") as error:
        train_online(other)
    assert "drop --draft-config, --draft-vocab-size and --fc-norm" in error.value.hint


def test_fsdp_in_one_process_is_refused(cycle_run, tmp_path: Path) -> None:
    target, _, _ = cycle_run
    config = OnlineTrainConfig(target_model=str(target), train_data="unused", output_dir=str(tmp_path / "out"), chat_template="qwen3", fsdp=True)
    with pytest.raises(Eagle3Error, match="--fsdp shards the draft across processes; this run is NO with 1 process"):
        train_online(config)
