"""``dump-hidden --backend vllm``: vLLM's CPU build (``extract_hidden_states`` and the project's
connector) writes the shards the transformers backend writes — the same samples, ids, loss
masks and vocabulary map, states equal to float32 rounding — on a tiny Qwen3 target."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from builders.dump_data import write_chat_records
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.dump import open_dump
from eagle3cli.dump.runner import dump_hidden
from eagle3cli.dump.manifest import VLLM_STATES_DIR
from eagle3cli.dump.vllm_states import rms_norm
from eagle3cli.errors import Eagle3Error
from vllm_env import save_vllm_target, vllm_python  # noqa: F401
from vllm_offline import FAST_ENGINE_ARGS, FAST_ENGINE_ENV


def dump_config(data: Path, target: Path, output: Path, **overrides) -> DumpHiddenConfig:
    return DumpHiddenConfig(**{
        "data": str(data), "target_model": str(target), "output_dir": str(output), "chat_template": "qwen3",
        "dtype": "float32", "shard_size": 4, "draft_vocab_size": 32, "device": "cpu", "max_length": 512, **overrides,
    })


@pytest.mark.slow
def test_vllm_backend_writes_the_shards_of_the_transformers_backend(
    vllm_python: str, tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase
) -> None:
    target = save_vllm_target(tmp_path / "target", qwen3_tokenizer)
    data = write_chat_records(tmp_path / "chats.jsonl", 10)
    dump_hidden(dump_config(data, target, tmp_path / "hf"))
    dump_hidden(dump_config(data, target, tmp_path / "vllm", backend="vllm", vllm_python=vllm_python),
                vllm_engine_args=FAST_ENGINE_ARGS, vllm_env=FAST_ENGINE_ENV)
    hf, vllm = open_dump(tmp_path / "hf", verify_checksums=True), open_dump(tmp_path / "vllm", verify_checksums=True)
    assert vllm.manifest["backend"] == "vllm" and vllm.num_shards == hf.num_shards == 3
    assert len(vllm) == len(hf) == 10
    worst = {"aux_hidden": 0.0, "last_hidden": 0.0}
    for ours, theirs in zip(vllm.iter_samples(), hf.iter_samples(), strict=True):
        assert (ours.sample_index, ours.sample_id) == (theirs.sample_index, theirs.sample_id)
        assert torch.equal(ours.input_ids, theirs.input_ids) and torch.equal(ours.loss_mask, theirs.loss_mask)
        for name in worst:
            a, b = getattr(ours, name), getattr(theirs, name)
            assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
            worst[name] = max(worst[name], float((a - b).abs().max()))
    assert worst["aux_hidden"] < 1e-6 and worst["last_hidden"] < 1e-5, worst  # measured 8.9e-8 / 1.7e-6
    assert torch.equal(vllm.vocab_map().d2t, hf.vocab_map().d2t)
    assert not (tmp_path / "vllm" / VLLM_STATES_DIR / "rank-0").exists()  # the per-request files are gone


def test_rms_norm_is_transformers_qwen3_norm() -> None:
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    torch.manual_seed(0)
    norm = Qwen3RMSNorm(64, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    for dtype in (torch.float32, torch.bfloat16):
        states = (torch.randn(5, 64) * 30).to(dtype)
        expected = norm.to(dtype)(states)
        assert torch.equal(rms_norm(states, norm.weight.detach(), 1e-6), expected.detach())


def test_a_target_with_another_final_norm_is_refused(tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase) -> None:
    from eagle3cli.dump.target import prepare_target
    from eagle3cli.dump.vllm_states import check_vllm_target, scratch_bytes

    config = dump_config(tmp_path, save_vllm_target(tmp_path / "target", qwen3_tokenizer), tmp_path / "out")
    target = prepare_target(config)
    check_vllm_target(config, target)
    gemma = dataclasses.replace(target, spec=dataclasses.replace(target.spec, config={**target.spec.config, "model_type": "gemma2"}))
    with pytest.raises(Eagle3Error, match="the target is 'gemma2'"):
        check_vllm_target(config, gemma)
    # 1,000 tokens over 3 shards: 334 per shard x 4 layers (3 captured + the last) x hidden 128 x 4 bytes
    assert scratch_bytes(1000, 3, target, torch.float32) == 334 * 4 * 128 * 4
    too_long = config.model_copy(update={"max_length": int(target.spec.config["max_position_embeddings"])})  # 2048
    with pytest.raises(Eagle3Error, match="leaves vLLM no room for its one generated token"):
        check_vllm_target(too_long, target)


def test_each_data_parallel_process_gets_its_own_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.dump.vllm_states import process_devices

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert process_devices(1, 2) == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert process_devices(0, 2) == ["4", "5"] and process_devices(1, 2) == ["6", "7"]
    with pytest.raises(Eagle3Error, match="process 2 needs devices"):
        process_devices(2, 2)
