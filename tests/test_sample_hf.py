"""``sample --backend hf``: in-process continuous batching gives plain decoding's answers, and
``--num-answers`` gives each prompt several seeded answers, resumably."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from builders.sample_output import shard_records, sharegpt, write_jsonl
from eagle3cli.config import SampleConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.client import SamplingParams
from eagle3cli.serving.hf_engine import BatchEngine, LocalChatClient, stop_token_ids
from eagle3cli.serving.sampler import sample

QUESTIONS = [
    ("What is 2+2?", "And 3+3?"), ("Name a colour.",), ("Write a haiku about the sea, please.", "Shorter?", "Again."),
    ("hi",), ("Tell me about the weather in a long sentence with many words in it.",), ("Why?", "Because?"), ("ok",),
]


def greedy_reference(model, tokenizer, messages: list[dict[str, str]], max_tokens: int, stop: set[int]) -> tuple[str, str, int]:
    """Plain greedy decoding, one prompt, no cache: the answer text, finish reason and token count."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    with torch.inference_mode():
        while len(new) < max_tokens:
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            new.append(token)
            if token in stop:
                return tokenizer.decode(new[:-1], skip_special_tokens=True), "stop", len(new)
    return tokenizer.decode(new, skip_special_tokens=True), "length", len(new)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_batched_greedy_answers_equal_plain_decoding(family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    target = request.getfixturevalue(f"{family}_target_dir")
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index, *questions) for index, questions in enumerate(QUESTIONS)])
    # batch 3 < 7 records: slots are freed and refilled, rows of different lengths share steps
    config = SampleConfig(data=str(data), output_dir=str(tmp_path / "out"), backend="hf", target_model=str(target),
                          dtype="float32", batch_size=3, max_tokens=12)
    summary = sample(config)
    assert (summary.num_done, summary.num_failed) == (len(QUESTIONS), 0)

    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(target)
    stop = set(stop_token_ids(model, tokenizer))
    records = shard_records(tmp_path / "out")
    assert [record["id"] for record in records] == [f"s{index}" for index in range(len(QUESTIONS))]
    num_tokens = 0
    for record, questions in zip(records, QUESTIONS):
        messages: list[dict[str, str]] = []
        answers = [turn for turn in record["conversations"] if turn["role"] == "assistant"]
        assert len(answers) == len(questions)
        for question, answer in zip(questions, answers):
            messages.append({"role": "user", "content": question})
            expected, reason, length = greedy_reference(model, tokenizer, messages, 12, stop)
            assert (answer["content"], answer["finish_reason"]) == (expected, reason)
            num_tokens += length
            messages.append({"role": "assistant", "content": expected})
        assert record["sampling_params"]["model"] == str(target)
    assert summary.num_tokens == num_tokens


def test_a_seeded_draw_does_not_depend_on_the_rows_beside_it(llama_target_dir: Path) -> None:
    """Float64, so other matrix shapes cannot round differently: each answer is the same alone
    (batch 1) and batched with others (batch 4)."""
    model = AutoModelForCausalLM.from_pretrained(llama_target_dir, dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_target_dir)

    def answers(batch_size: int) -> list[str]:
        engine = BatchEngine(model, stop_token_ids(model, tokenizer), batch_size=batch_size, storage_dtype=torch.float64)
        client = LocalChatClient(engine, tokenizer, max_context=2048)

        async def run() -> list[str]:
            replies = await asyncio.gather(*[
                client.complete([{"role": "user", "content": questions[0]}],
                                SamplingParams(model="m", temperature=1.0, top_p=0.9, max_tokens=16, seed=seed))
                for seed, questions in enumerate(QUESTIONS)
            ])
            await client.aclose()
            return [reply.content for reply in replies]

        return asyncio.run(run())

    alone, batched = answers(1), answers(4)
    assert alone == batched
    assert len(set(alone)) == len(alone)  # different seeds, different draws


def test_several_answers_per_prompt_each_a_record_resumable(llama_target_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index, *questions) for index, questions in enumerate(QUESTIONS[:4])])
    settings = dict(data=str(data), output_dir=str(tmp_path / "out"), backend="hf", target_model=str(llama_target_dir),
                    dtype="float32", max_tokens=8, num_answers=3, temperature_mix={0.0: 3, 1.0: 1}, shard_size=2)
    summary = sample(SampleConfig(**settings))
    assert (summary.num_done, summary.num_failed) == (12, 0)
    records = shard_records(tmp_path / "out")
    assert [record["id"] for record in records] == [f"s{index}#{answer}" for index in range(4) for answer in range(3)]
    for index in range(4):
        params = [record["sampling_params"] for record in records[3 * index:3 * index + 3]]
        assert sum(param["temperature"] == 0 for param in params) <= 1  # one greedy answer at most
        assert len({param["seed"] for param in params}) == 3
    sidecar = json.loads((tmp_path / "out/shards/shard-000000000-000000001.jsonl.done").read_text())
    assert [(entry["input_index"], entry["answer"]) for entry in sidecar["completed"]] == [(i, a) for i in range(2) for a in range(3)]

    before = {path.name: path.read_bytes() for path in (tmp_path / "out/shards").iterdir()}
    again = sample(SampleConfig(**settings))
    assert (again.num_resumed, again.num_done) == (12, 0)
    assert {path.name: path.read_bytes() for path in (tmp_path / "out/shards").iterdir()} == before


def test_a_failing_target_stops_the_run_with_one_clear_error_and_resumes(
    llama_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index, "Hello?") for index in range(3)])
    settings = dict(data=str(data), output_dir=str(tmp_path / "out"), backend="hf", target_model=str(llama_target_dir),
                    dtype="float32", max_tokens=4)

    def out_of_memory(self, admitted):
        raise RuntimeError("DefaultCPUAllocator: not enough memory")

    with monkeypatch.context() as patch:
        patch.setattr(BatchEngine, "advance", out_of_memory)
        with pytest.raises(Eagle3Error, match=r"the target failed in this process \(RuntimeError: DefaultCPUAllocator"):
            sample(SampleConfig(**settings))
    summary = sample(SampleConfig(**settings))
    assert (summary.num_done, summary.num_resumed) == (3, 0)


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_answers": 2}, "num_answers above 1 needs sampling"),
    ({"num_answers": 2, "temperature_mix": {0.0: 1}}, "num_answers above 1 needs sampling"),
    ({"backend": "hf"}, "backend hf needs target_model"),
    ({"target_model": "some/model"}, "target_model is for backend hf"),
])
def test_settings_that_cannot_work_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SampleConfig(data="d.jsonl", output_dir="out", **settings)


@pytest.mark.parametrize("sliding", [True, False])
def test_the_in_process_generator_refuses_only_sliding_window_targets(sliding: bool) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from eagle3cli.target.kv_cache import check_full_attention

    config = Qwen2Config(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         vocab_size=100, use_sliding_window=sliding, sliding_window=8, max_window_layers=2)
    model = Qwen2ForCausalLM(config)
    if sliding:
        with pytest.raises(Eagle3Error, match="sliding-window attention, which the in-process generator does not implement"):
            check_full_attention(model)
    else:
        check_full_attention(model)
