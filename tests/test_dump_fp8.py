"""float8 hidden-state shards: per-token (per capture layer) scales beside the values, half of
bf16's bytes, decoded to bfloat16 in the training data path, and exact enough to train on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from builders.dump_data import dump_config, write_chat_records
from eagle3cli.dump import open_dump
from eagle3cli.dump.manifest import shard_file
from eagle3cli.dump.plan import bytes_per_token
from eagle3cli.dump.runner import dump_hidden
from eagle3cli.dump.shard_file import FP8, FP8_MAX, dequantize, quantize
from eagle3cli.training.offline import DumpSource

HIDDEN = 64


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_records(tmp_path_factory.mktemp("data") / "chats.jsonl", 5)


@pytest.fixture(scope="module")
def dumps(qwen3_target_dir: Path, chats: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same chats dumped in bfloat16 and in float8."""
    out = tmp_path_factory.mktemp("dumps")
    for dtype in ("bfloat16", "float8_e4m3fn"):
        dump_hidden(dump_config(chats, qwen3_target_dir, out / dtype, dtype=dtype))
    return {dtype: out / dtype for dtype in ("bfloat16", "float8_e4m3fn")}


def test_quantize_scales_each_group_of_each_row_to_the_float8_range() -> None:
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 25.0, 80.0]).repeat_interleave(16)  # capture layers of very different size
    states = torch.randn(7, 48, generator=generator) * scales
    states[3] = 0.0  # an all-zero row stays zero, finite
    original = states.clone()
    values, scale = quantize(states, 3)
    assert torch.equal(states, original)  # the caller's float32 states are not touched
    assert values.dtype == FP8 and scale.shape == (7, 3) and bool(torch.isfinite(scale).all())
    assert torch.equal(values.float().unflatten(-1, (3, 16)).abs().amax(-1)[[0, 1, 2, 4, 5, 6]], torch.full((6, 3), FP8_MAX))
    decoded = dequantize(values, scale, torch.float32)
    assert bool((decoded[3] == 0).all())
    # e4m3 keeps 3 mantissa bits: every element within 1/16 of itself (plus float8's subnormal step)
    error = (decoded - states).abs()
    assert bool((error <= states.abs() / 16 + scale.repeat_interleave(16, -1) * 2.0**-9).all())


def test_float8_shards_hold_scales_and_half_the_bytes(dumps: dict[str, Path]) -> None:
    with safe_open(shard_file(dumps["float8_e4m3fn"], 0), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    num_tokens = tensors["input_ids"].numel()
    assert tensors["aux_hidden"].dtype == FP8 and tensors["aux_hidden"].shape == (num_tokens, 3 * HIDDEN)
    assert tensors["aux_scale"].dtype == torch.float32 and tensors["aux_scale"].shape == (num_tokens, 3)
    assert tensors["last_scale"].shape == (num_tokens, 1)
    manifests = {dtype: json.loads((path / "manifest.json").read_text()) for dtype, path in dumps.items()}
    assert manifests["float8_e4m3fn"]["num_tokens"] == manifests["bfloat16"]["num_tokens"]
    tensor_bytes = {dtype: manifest["num_tokens"] * bytes_per_token(HIDDEN, getattr(torch, dtype)) for dtype, manifest in manifests.items()}
    assert tensor_bytes["float8_e4m3fn"] == manifests["float8_e4m3fn"]["num_tokens"] * (4 * HIDDEN + 16 + 5)
    for dtype, manifest in manifests.items():  # the estimate is the tensors' size exactly, plus headers
        assert 0 < manifest["num_bytes"] - tensor_bytes[dtype] < 2000 * manifest["num_shards"]
    assert bytes_per_token(576, FP8) <= 4.2 * 576 < 8 * 576 <= bytes_per_token(576, torch.bfloat16)  # SmolLM2


def test_the_training_batch_decodes_float8_to_bfloat16_close_to_the_bf16_dump(dumps: dict[str, Path]) -> None:
    sources = {dtype: DumpSource(open_dump(path), None) for dtype, path in dumps.items()}
    indices = list(range(5))
    batches = {dtype: source.batch(indices, torch.device("cpu")) for dtype, source in sources.items()}
    reference, decoded = batches["bfloat16"], batches["float8_e4m3fn"]
    assert torch.equal(decoded.input_ids, reference.input_ids) and torch.equal(decoded.loss_mask, reference.loss_mask)
    for name in ("aux_hidden", "last_hidden"):
        ours, theirs = getattr(decoded, name), getattr(reference, name).float()
        assert ours.dtype == torch.bfloat16 and ours.shape == theirs.shape
        real = reference.attention_mask
        groups = 3 if name == "aux_hidden" else 1
        row_max = theirs.unflatten(-1, (groups, -1)).abs().amax(-1).repeat_interleave(HIDDEN, -1)
        error = (ours.float() - theirs).abs()[real]
        assert bool((error <= theirs.abs()[real] / 16 + row_max[real] / 128).all()), name
        assert bool((ours[~real] == 0).all())  # padding decodes to zero


def test_a_draft_trains_from_float8_shards_with_the_bf16_loss(dumps: dict[str, Path], qwen3_target_dir: Path, tmp_path: Path) -> None:
    from eagle3cli.config import OfflineTrainConfig
    from eagle3cli.training.draft_setup import build_draft
    from eagle3cli.training.offline import prepare_offline, train_offline
    from eagle3cli.training.step import TargetHead, target_rows, unrolled_step
    from eagle3cli.training.trainer import RunContext

    def config(dtype: str, output: Path) -> OfflineTrainConfig:
        return OfflineTrainConfig(target_model=str(qwen3_target_dir), train_hidden=str(dumps[dtype]), output_dir=str(output),
                                  precision="fp32", per_device_batch_size=2, ttt_length=3, num_epochs=1)

    context = RunContext(torch.device("cpu"), True, lambda: None, mixed_precision=False)
    losses = []
    for dtype in ("bfloat16", "float8_e4m3fn"):
        inputs = prepare_offline(config(dtype, tmp_path / "unused"), context)
        vocab_map = inputs.count_vocab_map()
        draft = build_draft(inputs.draft_config, vocab_map, inputs.embed_tokens, seed=0)
        batch = inputs.train.batch([0, 2, 4], torch.device("cpu"))
        rows = target_rows(batch.last_hidden.float(), batch.loss_mask, TargetHead.split(inputs.lm_head, draft.t2d))
        losses.append(float(unrolled_step(draft, batch, rows, ttt_length=3, loss_decay=0.8).loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=0.02)
    summary = train_offline(config("float8_e4m3fn", tmp_path / "draft"))
    assert summary.global_step == 2 and (summary.final_dir / "model.safetensors").is_file()


@pytest.mark.parametrize("native", [True, False])
def test_half_precision_dumps_compute_in_float32_on_a_cpu_without_native_bf16(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.dump import compute

    monkeypatch.setattr(compute, "native_bf16", lambda device: native or device.type == "cuda")
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    half = torch.bfloat16 if native else torch.float32
    assert [compute.compute_dtype(dtype, cpu) for dtype in (torch.bfloat16, torch.float16, FP8, torch.float32)] == [
        half, torch.float16 if native else torch.float32, half, torch.float32]
    assert [compute.compute_dtype(dtype, gpu) for dtype in (torch.bfloat16, FP8, torch.float32)] == [torch.bfloat16, torch.bfloat16, torch.float32]


def test_native_bf16_means_the_cpu_has_bf16_instructions() -> None:
    """On Linux the CPU's flags say it: AVX512-BF16 or AMX. oneDNN's "bf16 supported" is also
    true on plain AVX-512 (emulated bf16, 2.8x slower than float32 there), so it cannot decide."""
    from eagle3cli.target.loading import native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("needs /proc/cpuinfo")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    if not flags & {"avx512f", "avx512_bf16", "amx_bf16"}:
        pytest.skip("needs an x86 CPU with AVX-512 (where the two checks can disagree)")
    assert native_bf16(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert native_bf16(torch.device("cuda"))
