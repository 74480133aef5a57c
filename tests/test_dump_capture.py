"""Captured and dumped hidden states equal the plain forward's, for the Qwen3, Llama and HunYuan
tiny targets; loss masks equal the data layer's; batching does not change a sample's states."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from builders.dump_data import dump_config, reference_states, template_of, write_chat_records
from eagle3cli.target.capture import capture_hidden_states, capture_layer_inputs
from eagle3cli.chat_template import tokenize_conversation
from eagle3cli.data.readers import read_conversations
from eagle3cli.dump import open_dump
from eagle3cli.dump.runner import dump_hidden
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.hub import load_tokenizer

AUX_LAYER_IDS = (1, 2, 3)  # what the draft config derives for a 4-layer target


def load_model(target_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()


def test_capture_equals_output_hidden_states_without_running_lm_head(tiny_target_dir: Path) -> None:
    model = load_model(tiny_target_dir)
    model.lm_head.register_forward_hook(lambda *args: pytest.fail("the LM head ran"))
    input_ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    layers = model.model.layers
    pre_norm: list[torch.Tensor] = []
    layers[-1].register_forward_hook(lambda module, args, output: pre_norm.append(output[0] if isinstance(output, tuple) else output))

    with torch.inference_mode():
        states = capture_hidden_states(model, input_ids, aux_layer_ids=AUX_LAYER_IDS)
        reference = model.model(input_ids, output_hidden_states=True).hidden_states

    assert states.aux_hidden.shape == (2, 9, 3 * 64)
    assert torch.equal(states.aux_hidden, torch.cat([reference[k] for k in AUX_LAYER_IDS], dim=-1))
    assert torch.equal(states.last_hidden, reference[-1])
    assert torch.equal(states.last_hidden, model.model.norm(pre_norm[0]))  # after the final norm
    assert not any(layer._forward_pre_hooks for layer in layers)  # hooks removed


def test_capture_layer_inputs_reads_layer_inputs_of_a_full_forward(qwen3_target_dir: Path) -> None:
    model = load_model(qwen3_target_dir)
    input_ids = torch.arange(6)[None]
    with torch.inference_mode(), capture_layer_inputs(model, [3, 1]) as captured:
        output = model(input_ids, output_hidden_states=True)
    assert sorted(captured) == [1, 3]
    assert torch.equal(captured[3], output.hidden_states[3])


@pytest.mark.parametrize("layer_ids", [(1, 2, 4), (-1, 1, 2)])
def test_capture_rejects_layer_ids_outside_the_target(qwen3_target_dir: Path, layer_ids: tuple[int, ...]) -> None:
    with pytest.raises(Eagle3Error, match="outside 0..3"):
        capture_hidden_states(load_model(qwen3_target_dir), torch.arange(4)[None], aux_layer_ids=layer_ids)


def test_dumped_states_and_masks_equal_plain_forward_and_data_layer(tiny_target_dir: Path, tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 5)
    config = dump_config(data, tiny_target_dir, tmp_path / "out")
    dump_hidden(config)
    dump = open_dump(tmp_path / "out", verify_checksums=True)
    assert dump.aux_layer_ids == AUX_LAYER_IDS
    model = load_model(tiny_target_dir)
    tokenizer = load_tokenizer(str(tiny_target_dir))
    conversations = [conversation for _, conversation in read_conversations(str(data))]

    samples = list(dump.iter_samples())
    assert [sample.sample_id for sample in samples] == [conversation.id for conversation in conversations]
    for sample, conversation in zip(samples, conversations):
        expected = tokenize_conversation(tokenizer, conversation, template=template_of(tiny_target_dir), max_length=2048)
        assert sample.input_ids.tolist() == expected.input_ids
        assert sample.loss_mask.tolist() == expected.loss_mask
        aux_hidden, last_hidden = reference_states(model, sample.input_ids, AUX_LAYER_IDS)
        torch.testing.assert_close(sample.aux_hidden, aux_hidden, atol=1e-6, rtol=0)
        torch.testing.assert_close(sample.last_hidden, last_hidden, atol=1e-6, rtol=0)


def test_a_samples_states_do_not_depend_on_its_batch(qwen3_target_dir: Path, tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 6)
    dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "alone", batch_tokens=1, shard_size=6))
    dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "batched", batch_tokens=4096, shard_size=6))
    dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "pairs", batch_tokens=200, shard_size=6))
    alone, batched, pairs = (list(open_dump(tmp_path / name)) for name in ("alone", "batched", "pairs"))
    for single, *others in zip(alone, batched, pairs):
        for other in others:
            assert torch.equal(single.input_ids, other.input_ids)
            torch.testing.assert_close(other.aux_hidden, single.aux_hidden, atol=1e-5, rtol=0)
            torch.testing.assert_close(other.last_hidden, single.last_hidden, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_dump_equals_a_cpu_dump(qwen3_target_dir: Path, tmp_path: Path) -> None:
    data = write_chat_records(tmp_path / "chats.jsonl", 6)
    dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "cpu"))
    dump_hidden(dump_config(data, qwen3_target_dir, tmp_path / "cuda", device="cuda"))
    for on_cpu, on_cuda in zip(open_dump(tmp_path / "cpu"), open_dump(tmp_path / "cuda", verify_checksums=True), strict=True):
        assert torch.equal(on_cpu.input_ids, on_cuda.input_ids)
        torch.testing.assert_close(on_cuda.aux_hidden, on_cpu.aux_hidden, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(on_cuda.last_hidden, on_cpu.last_hidden, atol=1e-4, rtol=1e-4)
