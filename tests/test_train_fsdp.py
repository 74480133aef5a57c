"""``train --fsdp`` in two real CPU processes (torchrun, gloo, FSDP2): the sharded run trains as
one process with the same global batch does, resumes from a checkpoint to the uninterrupted
weights, and writes a draft ``inspect`` accepts (vLLM's acceptance: tests/test_vllm_draft.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from builders.training import cycle_target_dir, single_thread_torch, torchrun_eagle3, write_cycle_data
from eagle3cli.cli.main import app
from eagle3cli.config import OnlineTrainConfig
from eagle3cli.training.online import train_online
from eagle3cli.training.reporting import read_metrics

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)
SETTINGS = dict(
    chat_template="qwen3", precision="fp32", ttt_length=3, learning_rate=3e-3, log_steps=1, max_steps=4,
    num_epochs=2, gradient_accumulation_steps=2, save_steps=2, save_total_limit=2, draft_vocab_size=64,
)


def train_fsdp(target: Path, data: Path, eval_data: Path, output: Path, **overrides) -> str:
    """``eagle3 train online --fsdp`` in two processes; their output."""
    args = ["train", "online", "--fsdp", "--target-model", str(target), "--train-data", str(data), "--eval-data", str(eval_data),
            "--output-dir", str(output), "--per-device-batch-size", "2"]
    for key, value in {**SETTINGS, **overrides}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return torchrun_eagle3(args)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path, str]:
    """The target, training and eval data, and a finished two-process FSDP run (and its output)."""
    root = tmp_path_factory.mktemp("fsdp")
    target = cycle_target_dir(tmp_path_factory)
    write_cycle_data(root / "train.jsonl", 16)
    write_cycle_data(root / "eval.jsonl", 5, first_index=100)  # uneven across the two processes
    output = train_fsdp(target, root / "train.jsonl", root / "eval.jsonl", root / "two")
    return target, root / "train.jsonl", root / "eval.jsonl", root / "two", output


@pytest.mark.slow
def test_two_fsdp_processes_train_as_one_process_with_the_same_global_batch(fsdp_run, tmp_path: Path) -> None:
    target, data, eval_data, two, output = fsdp_run
    assert output.count("step 00001/00004") == 1 and output.count("best draft") == 1  # process 0 reports
    state = two / "checkpoints" / "step-00000004" / "training_state"
    assert sorted(path.name for path in (state / "optimizer_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    one = OnlineTrainConfig(target_model=str(target), train_data=str(data), eval_data=str(eval_data),
                            output_dir=str(tmp_path / "one"), per_device_batch_size=4, **SETTINGS)
    train_online(one)
    two_logs, one_logs = read_metrics(two), read_metrics(tmp_path / "one")
    assert [record["step"] for record in two_logs] == [record["step"] for record in one_logs] == [1, 2, 3, 4, 4]
    for sharded, whole in zip(two_logs, one_logs):
        assert sharded["loss"] == pytest.approx(whole["loss"], rel=1e-5)
        assert sharded.get("num_trained_tokens") == whole.get("num_trained_tokens")
    assert two_logs[-1]["sim_accept_len"] == pytest.approx(one_logs[-1]["sim_accept_len"], rel=1e-4)  # eval
    sharded, whole = weights(two / "final"), weights(tmp_path / "one" / "final")
    assert sharded.keys() == whole.keys()
    assert not torch.equal(sharded["fc.weight"], weights(two / "checkpoints" / "step-00000002")["fc.weight"])  # it trained
    for key in whole:
        torch.testing.assert_close(sharded[key], whole[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
def test_a_resumed_fsdp_run_ends_with_the_uninterrupted_weights(fsdp_run, tmp_path: Path) -> None:
    target, data, eval_data, two, _ = fsdp_run
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    for name in ("checkpoints/step-00000004", "final", "best"):  # as if stopped after the step-2 save
        shutil.rmtree(resumed / name)
    output = train_fsdp(target, data, eval_data, resumed)
    assert "resumed from step 2 (epoch 0, micro-batch 4)" in output
    assert [record["step"] for record in read_metrics(resumed)] == [1, 2, 3, 4, 4]
    uninterrupted, again = weights(two / "final"), weights(resumed / "final")
    assert uninterrupted.keys() == again.keys() and all(torch.equal(uninterrupted[key], again[key]) for key in again)


@pytest.mark.slow
def test_a_draft_written_under_fsdp_passes_inspect(fsdp_run) -> None:
    from typer.testing import CliRunner

    target, _, _, two, _ = fsdp_run
    for draft in (two / "final", two / "best", two / "checkpoints" / "step-00000004"):
        result = CliRunner().invoke(app, ["inspect", str(draft), "--target-model", str(target)])
        assert result.exit_code == 0, result.output
        assert "target check │ passed" in " ".join(result.output.split()), result.output


@pytest.mark.slow
def test_bf16_fsdp_trains_as_one_bf16_process(fsdp_run, tmp_path: Path) -> None:
    """Mixed precision: float32 weights and bf16 autocast, as in one process (accelerate's own
    FSDP2 bf16 policy would cast the loss normalisers and target probabilities to bf16)."""
    target, data, eval_data, _, _ = fsdp_run
    train_fsdp(target, data, eval_data, tmp_path / "two", precision="bf16", max_steps=2)
    one = OnlineTrainConfig(target_model=str(target), train_data=str(data), eval_data=str(eval_data),
                            output_dir=str(tmp_path / "one"), per_device_batch_size=4, **{**SETTINGS, "precision": "bf16", "max_steps": 2})
    train_online(one)
    two_logs, one_logs = read_metrics(tmp_path / "two"), read_metrics(tmp_path / "one")
    assert two_logs[0]["loss"] == pytest.approx(one_logs[0]["loss"], rel=2e-5)  # measured 1e-5
    for sharded, whole in zip(two_logs, one_logs, strict=True):  # bf16 steps drift apart a little
        assert sharded["loss"] == pytest.approx(whole["loss"], rel=1e-3)
    sharded, whole = weights(tmp_path / "two" / "final"), weights(tmp_path / "one" / "final")
    assert all(tensor.dtype != torch.bfloat16 for tensor in sharded.values())
    # Adam moves a weight by up to ~lr per step however small its gradient, so bf16 noise in a
    # near-zero gradient can show as ~lr x steps; nearly every weight agrees far closer
    for key in whole:
        difference = (sharded[key].float() - whole[key].float()).abs()
        assert float(difference.max()) <= 2 * SETTINGS["learning_rate"] * 2, key
        assert float((difference > 1e-4).float().mean()) < 0.05, key  # measured up to 1.1 %
