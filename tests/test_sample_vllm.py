"""``eagle3 serve`` + ``eagle3 sample`` against the real vLLM (CPU build) on a tiny Qwen3 target.

Slow: each vLLM start takes ~30-50 s on two cores (eager mode, 1 GiB KV cache, float32).
One server is shared by the module; the crash test kills it and starts a new one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from typer.testing import CliRunner

from builders.sample_output import num_written_records, shard_records, sharegpt, wait_for_written_records, write_jsonl
from eagle3cli.cli.main import app
from vllm_env import ServeProcess, save_vllm_target, vllm_python  # noqa: F401

pytestmark = pytest.mark.slow
runner = CliRunner()
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def vllm_target(tmp_path_factory: pytest.TempPathFactory, qwen3_tokenizer: PreTrainedTokenizerBase) -> Path:
    return save_vllm_target(tmp_path_factory.mktemp("vllm_target"), qwen3_tokenizer)


@pytest.fixture(scope="module")
def served(vllm_python: str, vllm_target: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(vllm_python, vllm_target, tmp_path_factory.mktemp("vllm_logs"))
    yield server
    server.stop()


def running(server: ServeProcess) -> ServeProcess:
    if not server.running:
        server.start()
    return server


def greedy_answer(model: Any, tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The target's own greedy answer (HF transformers), decoded as vLLM does."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=MAX_TOKENS, do_sample=False)
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)


def test_sharegpt_and_ultrachat_are_regenerated_turn_by_turn_as_the_target_answers(
    served: ServeProcess, vllm_target: Path, tmp_path: Path
) -> None:
    server = running(served)
    sharegpt_data = write_jsonl(tmp_path / "sharegpt.jsonl", [
        sharegpt(0, "What is the capital of France?", "And of Germany?", system="You are a helpful assistant."),
        sharegpt(1, "Write a short poem about the sea."),
        sharegpt(2, "Hello!", "What is 2 + 2?", "Thank you very much."),
    ])
    ultrachat_data = write_jsonl(tmp_path / "ultrachat.jsonl", [
        {"prompt_id": "u0", "prompt": "Count to ten.", "messages": [
            {"role": "user", "content": "Count to ten."}, {"role": "assistant", "content": "old"},
            {"role": "user", "content": "Now backwards."}, {"role": "assistant", "content": "old"}]},
        {"prompt_id": "u1", "prompt": "Translate: good morning.", "messages": [
            {"role": "user", "content": "Translate to German: good morning."}, {"role": "assistant", "content": "old"}]},
    ])
    records = []
    for data, data_format in ((sharegpt_data, "sharegpt"), (ultrachat_data, "ultrachat")):
        output_dir = tmp_path / f"out-{data_format}"
        result = runner.invoke(app, [
            "sample", "--data", str(data), "--format", data_format, "--output-dir", str(output_dir),
            "--base-port", str(server.base_port), "--num-servers", "1", "--max-tokens", str(MAX_TOKENS),
            "--temperature", "0", "--no-enable-thinking",
        ])
        assert result.exit_code == 0, result.output
        records += shard_records(output_dir)
        assert (output_dir / "failed.jsonl").read_text() == ""
    assert [record["id"] for record in records] == ["s0", "s1", "s2", "u0", "u1"]
    assert [turn["role"] for turn in records[0]["conversations"]] == ["system", "user", "assistant", "user", "assistant"]
    assert records[0]["conversations"][0]["content"] == "You are a helpful assistant."
    assert {key: value for key, value in records[0]["sampling_params"].items() if key != "seed"} == {
        "model": str(vllm_target), "temperature": 0.0, "top_p": 1.0, "max_tokens": MAX_TOKENS, "enable_thinking": False,
    }
    tokenizer = AutoTokenizer.from_pretrained(vllm_target)
    model = AutoModelForCausalLM.from_pretrained(vllm_target, dtype=torch.float32).eval()
    for record in records:
        history: list[dict[str, str]] = []
        for turn in record["conversations"]:
            if turn["role"] == "assistant":
                assert turn["finish_reason"] in ("stop", "length")
                # vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence (the
                # random target emits stray bytes), which a full decode shows as U+FFFD.
                expected = greedy_answer(model, tokenizer, history)
                assert turn["content"].rstrip("\ufffd") == expected.rstrip("\ufffd"), (record["id"], len(history))
            history.append({"role": turn["role"], "content": turn["content"]})


def test_a_sampled_answer_to_a_prompt_longer_than_a_batch_share_keeps_the_cpu_server_alive(
    vllm_python: str, qwen3_tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    """A 3,000-token prompt is over vLLM's 2,048-token CPU batch budget: with chunked prefill its
    seeded (temperature > 0) request would be split, and vLLM 0.32's CPU runner dies rewinding
    the request's generator. ``eagle3 serve`` turns chunked prefill off on CPU."""
    target = save_vllm_target(tmp_path / "target", qwen3_tokenizer)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 4096}))
    prompts = [" ".join(f"{index}-{word}" for word in range(580)) for index in range(2)]
    assert all(3000 <= len(qwen3_tokenizer(prompt)["input_ids"]) < 4096 - 64 for prompt in prompts)
    data = write_jsonl(tmp_path / "long.jsonl", [sharegpt(index, prompt) for index, prompt in enumerate(prompts)])
    server = ServeProcess(vllm_python, target, tmp_path / "logs", max_model_len=4096)
    server.start()
    try:
        result = runner.invoke(app, [
            "sample", "--data", str(data), "--output-dir", str(tmp_path / "out"), "--base-port", str(server.base_port),
            "--num-servers", "1", "--max-tokens", "8", "--temperature", "0.8", "--server-down-timeout", "20",
        ])
        assert result.exit_code == 0, result.output
        assert [record["id"] for record in shard_records(tmp_path / "out")] == ["s0", "s1"]
        assert (tmp_path / "out" / "failed.jsonl").read_text() == "" and server.running
    finally:
        server.stop()


def test_kill_9_mid_run_restart_and_rerun_gives_every_record_exactly_once(served: ServeProcess, tmp_path: Path) -> None:
    server = running(served)
    questions = ["Hello! How can I help you today?", "Explain speculative decoding.", "Count: 1, 2, 3.", "Thank you."]
    data = write_jsonl(tmp_path / "chats.jsonl", [
        sharegpt(index, questions[index % 4], questions[(index + 1) % 4], system="Be brief." if index % 3 == 0 else None)
        for index in range(40)
    ])
    output_dir = tmp_path / "out"
    settings = tmp_path / "sample.yaml"
    settings.write_text("server_down_timeout: 5\nretry_backoff: 0.2\nmax_tokens: 48\ntemperature_mix: '0:1,0.8:1'\n")
    command = [sys.executable, "-m", "eagle3cli", "sample", "--data", str(data), "--output-dir", str(output_dir),
               "--base-port", str(server.base_port), "--num-servers", "1", "--concurrency", "4",
               "--shard-size", "16", "--config", str(settings)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_written_records(output_dir / "shards", at_least=8, process=first, timeout_s=300)
    server.kill_servers()
    assert server.process is not None and server.process.wait(timeout=60) == 1  # serve noticed and stopped
    _, first_errors = first.communicate(timeout=120)
    assert first.returncode == 1 and "run stopped: no server answered" in first_errors
    assert 8 <= num_written_records(output_dir / "shards") < 40

    server.start()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    records = shard_records(output_dir)
    assert [record["id"] for record in records] == [f"s{index}" for index in range(40)]
    assert (output_dir / "failed.jsonl").read_text() == ""
    assert not list((output_dir / "shards").glob("*.partial"))
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["num_resumed"] + summary["num_done"] == 40 and summary["num_resumed"] >= 8
    assert {record["sampling_params"]["temperature"] for record in records} == {0.0, 0.8}

    vllm_groups = [int(pid) for pid in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()]
    assert server.stop() == 0
    assert _live_members(vllm_groups) == []


def _live_members(groups: list[int], timeout_s: float = 15) -> list[int]:
    """Processes of ``groups`` that are still running (zombies awaiting their reaper do not count)."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in groups and fields[0] != "Z":
                live.append(int(stat.parent.name))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.2)
