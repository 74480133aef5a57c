"""``train offline``: the same step as online on dumped states, and the dump/target checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from builders.training import cycle_target_dir, single_thread_torch, write_cycle_data
from eagle3cli.cli.main import app
from eagle3cli.config import DumpHiddenConfig, OfflineTrainConfig, OnlineTrainConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.training.draft_setup import build_draft
from eagle3cli.training.offline import prepare_offline, train_offline
from eagle3cli.training.online import prepare_online
from eagle3cli.training.reporting import read_metrics
from eagle3cli.training.step import TargetHead, target_rows, unrolled_step
from eagle3cli.training.trainer import RunContext

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)
CPU = RunContext(torch.device("cpu"), True, lambda: None, mixed_precision=False)


def dump(data: Path, target: Path, output: Path) -> Path:
    from eagle3cli.dump.runner import dump_hidden

    dump_hidden(DumpHiddenConfig(
        data=str(data), target_model=str(target), output_dir=str(output), chat_template="qwen3",
        dtype="float32", draft_vocab_size=64, device="cpu", shard_size=8,
    ))
    return output


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("offline")
    target = cycle_target_dir(tmp_path_factory)
    write_cycle_data(root / "train.jsonl", 24)
    write_cycle_data(root / "eval.jsonl", 6, first_index=1000)
    return {
        "root": root, "target": target, "train_data": root / "train.jsonl",
        "train": dump(root / "train.jsonl", target, root / "train_dump"),
        "eval": dump(root / "eval.jsonl", target, root / "eval_dump"),
    }


def offline_config(dumped: dict[str, Path], output: Path, **overrides) -> OfflineTrainConfig:
    fields = dict(
        target_model=str(dumped["target"]), train_hidden=str(dumped["train"]), eval_hidden=str(dumped["eval"]),
        output_dir=str(output), precision="fp32", per_device_batch_size=4, ttt_length=3, learning_rate=3e-3,
    )
    return OfflineTrainConfig(**{**fields, **overrides})


def test_online_and_offline_give_the_same_loss_on_the_same_batch(dumped) -> None:
    online = prepare_online(OnlineTrainConfig(
        target_model=str(dumped["target"]), train_data=str(dumped["train_data"]), output_dir="unused",
        chat_template="qwen3", draft_vocab_size=64, precision="fp32",
    ), CPU)
    offline = prepare_offline(offline_config(dumped, Path("unused")), CPU)
    vocab_map = online.count_vocab_map()
    assert torch.equal(vocab_map.d2t, offline.count_vocab_map().d2t)
    outputs = []
    for inputs in (online, offline):
        draft = build_draft(inputs.draft_config, vocab_map, inputs.embed_tokens, seed=0)
        batch = inputs.train.batch([3, 11, 20], torch.device("cpu"))
        rows = target_rows(batch.last_hidden, batch.loss_mask, TargetHead.split(inputs.lm_head, draft.t2d))
        outputs.append(unrolled_step(draft, batch, rows, ttt_length=3, loss_decay=0.8))
    torch.testing.assert_close(outputs[0].loss, outputs[1].loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(outputs[0].metric_sums[1:], outputs[1].metric_sums[1:])  # counts agree exactly


def test_offline_training_learns_and_keeps_best(dumped, tmp_path: Path) -> None:
    summary = train_offline(offline_config(dumped, tmp_path / "run", num_epochs=6, log_steps=6, eval_steps=18))
    logs = [record for record in read_metrics(tmp_path / "run") if record["kind"] == "train"]
    assert summary.global_step == 36 and logs[-1]["loss"] < 0.6 * logs[0]["loss"]
    assert summary.eval_metrics["acc@0"] > 0.6
    assert CliRunner().invoke(app, ["inspect", str(tmp_path / "run" / "best")]).exit_code == 0


def test_cli_offline_runs_from_flags(dumped, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", "offline", "--target-model", str(dumped["target"]), "--train-hidden", str(dumped["train"]),
        "--output-dir", str(tmp_path / "out"), "--precision", "fp32", "--max-steps", "2", "--ttt-length", "2",
        "--lm-head-key", "lm_head.weight", "--train-data", str(dumped["train_data"]),
    ])
    assert result.exit_code == 0, result.output
    assert "best draft" in result.output and (tmp_path / "out" / "final" / "model.safetensors").is_file()


def test_num_samples_trains_on_a_prefix_of_the_dump(dumped, tmp_path: Path) -> None:
    config = offline_config(dumped, tmp_path / "run", num_samples=8, num_epochs=2, eval_steps=None)
    inputs = prepare_offline(config, CPU)
    whole = prepare_offline(offline_config(dumped, tmp_path / "unused"), CPU)
    assert (inputs.train.num_samples, whole.train.num_samples) == (8, 24)
    assert inputs.train_data_sha256 != whole.train_data_sha256  # a resume must see the same prefix
    assert train_offline(config).global_step == 2 * 8 // 4
    changed = offline_config(dumped, tmp_path / "run", num_samples=12, num_epochs=2, eval_steps=None)
    with pytest.raises(Eagle3Error, match="num_samples: 8 -> 12"):
        train_offline(changed)


def test_init_head_from_target_starts_from_the_target_rows_and_final_norm(dumped, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from eagle3cli.target.weights import read_final_norm, read_lm_head

    train_offline(offline_config(dumped, tmp_path / "run", init_head_from_target=True, max_steps=1, learning_rate=1e-9))
    draft = load_file(tmp_path / "run" / "final" / "model.safetensors")
    torch.testing.assert_close(draft["lm_head.weight"], read_lm_head(dumped["target"])[draft["t2d"]], rtol=0, atol=1e-6)
    torch.testing.assert_close(draft["norm.weight"], read_final_norm(dumped["target"]), rtol=0, atol=1e-6)
    assert not torch.equal(read_final_norm(dumped["target"]), torch.ones_like(draft["norm.weight"]))  # not the default init


def test_fc_norm_flag_trains_and_saves_a_draft_with_the_norms(dumped, tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file

    train_offline(offline_config(dumped, tmp_path / "run", fc_norm=True, max_steps=2))
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["fc_norm"] is True
    weights = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(not torch.equal(weights[f"fc_norm.{index}.weight"], torch.ones_like(weights[f"fc_norm.{index}.weight"]))
               for index in range(3))  # trained from their start at one


def test_init_head_from_target_needs_equal_hidden_sizes() -> None:
    from builders.training import tiny_draft

    from eagle3cli.training.draft_setup import check_head_init

    draft = tiny_draft()
    assert draft.config.hidden_size != draft.config.target_hidden_size
    with pytest.raises(Eagle3Error, match="needs the draft's hidden size"):
        check_head_init(draft.config, torch.ones(draft.config.target_hidden_size))


def test_dump_of_another_target_is_refused(dumped, llama_target_dir: Path, tmp_path: Path) -> None:
    config = offline_config(dumped, tmp_path / "out", target_model=str(llama_target_dir), eval_hidden=None)
    with pytest.raises(Eagle3Error, match="was not made from target"):
        train_offline(config)


def test_same_shaped_target_with_another_config_is_refused(dumped, tmp_path: Path) -> None:
    import json
    import shutil

    changed = tmp_path / "changed_target"
    shutil.copytree(dumped["target"], changed)
    config_json = json.loads((changed / "config.json").read_text())
    config_json["rms_norm_eps"] = 1e-5
    (changed / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(Eagle3Error, match="sha256"):
        train_offline(offline_config(dumped, tmp_path / "out", target_model=str(changed)))


def test_missing_lm_head_key_is_named(dumped, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", "offline", "--target-model", str(dumped["target"]), "--train-hidden", str(dumped["train"]),
        "--output-dir", str(tmp_path / "out"), "--lm-head-key", "model.lm_head.weight", "--precision", "fp32",
    ])
    assert result.exit_code == 1
    assert "model.lm_head.weight" in result.output and "did you mean 'lm_head.weight'" in result.output


def test_draft_config_with_other_capture_layers_is_refused(dumped, tmp_path: Path) -> None:
    from eagle3cli.target.spec import read_target_config
    from eagle3cli.dump import open_dump
    from eagle3cli.training.offline import offline_draft_config

    dump_of_other_layers = open_dump(dumped["train"])
    manifest = {**dump_of_other_layers.manifest, "aux_layer_ids": [1, 2, 4]}  # as a deeper target's dump
    dump_of_other_layers = dataclasses.replace(dump_of_other_layers, manifest=manifest)
    config = offline_config(dumped, tmp_path / "out", draft_config=str(dumped["train"] / "draft_config.json"))
    with pytest.raises(Eagle3Error, match=r"captures layers \[1, 2, 3\], the dump .* holds layers \[1, 2, 4\]"):
        offline_draft_config(config, dump_of_other_layers, read_target_config(dumped["target"]))


def test_draft_config_from_another_target_is_refused(dumped, llama_target_dir: Path, tmp_path: Path) -> None:
    from eagle3cli.draft.config_json import write_draft_config
    from eagle3cli.draft.derive import resolve_draft_config
    from eagle3cli.target.spec import read_target_config

    write_draft_config(tmp_path / "draft.json", resolve_draft_config(read_target_config(llama_target_dir)))
    with pytest.raises(Eagle3Error, match="vocab_size"):
        train_offline(offline_config(dumped, tmp_path / "out", draft_config=str(tmp_path / "draft.json")))


def test_chat_template_that_differs_from_the_dump_is_refused(dumped, tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="chat-template"):
        train_offline(offline_config(dumped, tmp_path / "out", chat_template="hunyuan"))


def test_init_head_from_target_and_init_draft_are_refused_together(dumped) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="init_head_from_target would overwrite the head loaded by init_draft"):
        offline_config(dumped, Path("unused"), init_head_from_target=True, init_draft="some/draft")
