"""``sample()`` end to end against a real loopback server: regeneration, failures, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from builders.fake_openai import Drop, FakeOpenAIServer, Reply, Status, default_reply
from builders.sample_output import num_written_records, shard_records, sharegpt, wait_for_written_records, write_jsonl
from eagle3cli.config import SampleConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.sampler import record_seed, record_temperature, sample


def ultrachat(index: int, *questions: str) -> dict[str, Any]:
    messages = []
    for question in questions:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": "old"}]
    return {"prompt_id": f"u{index}", "prompt": questions[0], "messages": messages}


def config_for(server: FakeOpenAIServer, data: Path, output_dir: Path, **settings: Any) -> SampleConfig:
    defaults: dict[str, Any] = {"retry_backoff": 0.01, "server_down_timeout": 2.0}
    return SampleConfig(data=str(data), output_dir=str(output_dir), server_urls=[server.url], **{**defaults, **settings})


def test_every_user_turn_is_answered_with_the_regenerated_history(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [
        sharegpt(0, "What is 2+2?", "And 3+3?", system="You are terse."),
        ultrachat(1, "Name a colour.", "Another one?", "One more?"),
    ])
    with FakeOpenAIServer() as server:
        summary = sample(config_for(server, data, tmp_path / "out", temperature=0.5, max_tokens=64))
        requests = server.chat_requests()
    first, second = shard_records(tmp_path / "out")
    assert first == {
        "id": "s0",
        "conversations": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "answer 1 to: What is 2+2?", "finish_reason": "stop"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "answer 2 to: And 3+3?", "finish_reason": "stop"},
        ],
        "sampling_params": {"model": "tiny-target", "temperature": 0.5, "top_p": 1.0, "max_tokens": 64, "enable_thinking": False,
                            "seed": record_seed(config_for(server, data, tmp_path / "out"), 0)},
    }
    # every request of a record carries the record's seed; records differ
    seeds = {request["messages"][-1]["content"]: request["seed"] for request in requests}
    assert seeds["What is 2+2?"] == seeds["And 3+3?"] != seeds["Name a colour."]
    assert second["id"] == "u1"
    assert [turn["content"] for turn in second["conversations"] if turn["role"] == "assistant"] == [
        "answer 1 to: Name a colour.", "answer 2 to: Another one?", "answer 3 to: One more?",
    ]
    replayed = next(r["messages"] for r in requests if r["messages"][-1]["content"] == "And 3+3?")
    assert replayed[:3] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "answer 1 to: What is 2+2?"},
    ]
    answers = [turn["content"] for record in (first, second) for turn in record["conversations"] if turn["role"] == "assistant"]
    assert (summary.num_done, summary.num_failed) == (2, 0)
    assert summary.num_tokens == sum(len(answer.split()) for answer in answers)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["num_done"] == 2
    assert json.loads((tmp_path / "out" / "config.json").read_text())["temperature"] == 0.5
    assert (tmp_path / "out" / "failed.jsonl").read_text() == ""


def test_user_turns_in_a_row_are_each_answered_in_order(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": "p0", "conversations": [{"role": "user", "content": "Summarise this."}, {"role": "user", "content": "Shorter?"}]},
    ])
    with FakeOpenAIServer() as server:
        summary = sample(config_for(server, data, tmp_path / "out", max_tokens=64))
        requests = server.chat_requests()
    (record,) = shard_records(tmp_path / "out")
    assert [(turn["role"], turn["content"]) for turn in record["conversations"]] == [
        ("user", "Summarise this."), ("assistant", "answer 1 to: Summarise this."),
        ("user", "Shorter?"), ("assistant", "answer 2 to: Shorter?"),
    ]
    assert requests[-1]["messages"][:2] == [
        {"role": "user", "content": "Summarise this."}, {"role": "assistant", "content": "answer 1 to: Summarise this."},
    ]
    assert (summary.num_done, summary.num_skipped) == (1, 0)


def test_temperature_mix_is_drawn_per_record_with_its_seed(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index) for index in range(60)])
    with FakeOpenAIServer() as server:
        config = config_for(server, data, tmp_path / "out", temperature_mix="0:3,1.0:1", seed=7, concurrency=16)
        sample(config)
        sent = {r["messages"][-1]["content"]: r["temperature"] for r in server.chat_requests()}
    temperatures = [record["sampling_params"]["temperature"] for record in shard_records(tmp_path / "out")]
    assert temperatures == [record_temperature(config, index) for index in range(60)]
    assert all(sent[f"question {index}"] == temperatures[index] for index in range(60))
    draws = [record_temperature(config, index) for index in range(4000)]
    assert abs(draws.count(1.0) / len(draws) - 0.25) < 0.03  # 4.4 standard deviations
    other_seed = config.model_copy(update={"seed": 8})
    assert draws != [record_temperature(other_seed, index) for index in range(4000)]


def test_failed_records_are_listed_with_reasons_and_retried_by_a_rerun(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index, "fine" if index != 3 else "BAD one") for index in range(6)])
    refuse_bad = lambda body, number: Status(400, "bad prompt") if "BAD" in body["messages"][-1]["content"] else default_reply(body, number)  # noqa: E731
    with FakeOpenAIServer(behaviour=refuse_bad) as server:
        config = config_for(server, data, tmp_path / "out", shard_size=4)
        summary = sample(config)
        (failed,) = [json.loads(line) for line in (tmp_path / "out" / "failed.jsonl").read_text().splitlines()]
        assert (summary.num_done, summary.num_failed) == (5, 1)
        assert (failed["id"], failed["input_index"]) == ("s3", 3)
        assert "conversations[1]: http" in failed["reason"] and "HTTP 400: bad prompt" in failed["reason"]
        assert [record["id"] for record in shard_records(tmp_path / "out")] == ["s0", "s1", "s2", "s4", "s5"]
        server.behaviour = default_reply
        rerun = sample(config)
    assert (rerun.num_done, rerun.num_resumed, rerun.num_failed) == (1, 5, 0)
    assert [record["id"] for record in shard_records(tmp_path / "out")] == [f"s{index}" for index in range(6)]
    assert (tmp_path / "out" / "failed.jsonl").read_text() == ""


def test_truncated_answers_are_counted_and_dropped_on_request(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(0, "short"), sharegpt(1, "LONG please", "more")])
    with FakeOpenAIServer() as server:
        kept = sample(config_for(server, data, tmp_path / "kept"))
        dropped = sample(config_for(server, data, tmp_path / "dropped", drop_truncated=True))
    assert (kept.num_truncated, kept.num_dropped, kept.num_done) == (1, 0, 2)
    assert shard_records(tmp_path / "kept")[1]["conversations"][1]["finish_reason"] == "length"
    assert (dropped.num_truncated, dropped.num_dropped, dropped.num_done) == (1, 1, 1)
    assert [record["id"] for record in shard_records(tmp_path / "dropped")] == ["s0"]


def test_bad_input_records_are_skipped_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text(json.dumps(sharegpt(0)) + "\n{not json\n" + json.dumps(sharegpt(2)) + "\n")
    with FakeOpenAIServer() as server:
        summary = sample(config_for(server, data, tmp_path / "out", on_bad_record="skip", shard_size=2))
    assert (summary.num_done, summary.num_skipped) == (2, 1)
    assert [path.name for path in sorted((tmp_path / "out" / "shards").glob("*.jsonl"))] == [
        "shard-000000000-000000001.jsonl", "shard-000000002-000000003.jsonl",
    ]


def test_run_stops_when_every_server_is_gone_and_a_rerun_completes_it(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index) for index in range(30)])
    server = FakeOpenAIServer()

    def dies_after_ten(body: dict[str, Any], number: int) -> Any:
        if number == 10:
            threading.Thread(target=server.stop).start()
        return default_reply(body, number) if number < 10 else Drop()

    server.behaviour = dies_after_ten
    server.start()
    try:
        config = config_for(server, data, tmp_path / "out", shard_size=8, concurrency=2, server_down_timeout=0.5)
        first = sample(config)
        assert first.stopped_reason is not None and "rerun the same command to resume" in first.stopped_reason
        assert first.num_done < 30 and first.num_failed == 0
        server.behaviour = default_reply
        server.start()
        second = sample(config)
    finally:
        server.stop()
    assert second.stopped_reason is None and second.num_resumed == first.num_done
    assert [record["id"] for record in shard_records(tmp_path / "out")] == [f"s{index}" for index in range(30)]
    assert (tmp_path / "out" / "failed.jsonl").read_text() == ""


def test_kill_9_mid_run_then_rerun_has_every_record_exactly_once(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(index, f"q{index}", f"again {index}") for index in range(60)])
    output_dir = tmp_path / "out"
    slow = lambda body, number: Reply(default_reply(body, number).content, delay_s=0.02)  # noqa: E731
    with FakeOpenAIServer(behaviour=slow) as server:
        command = [sys.executable, "-m", "eagle3cli", "sample", "--data", str(data), "--output-dir", str(output_dir),
                   "--server-url", server.url, "--shard-size", "7", "--concurrency", "4"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_written_records(output_dir / "shards", at_least=20, process=process, timeout_s=60)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_with = num_written_records(output_dir / "shards")
        assert 20 <= killed_with < 60
        summary = sample(SampleConfig(data=str(data), output_dir=str(output_dir), server_urls=[server.url], shard_size=7))
    records = shard_records(output_dir)
    assert [record["id"] for record in records] == [f"s{index}" for index in range(60)]
    assert Counter(record["id"] for record in records).most_common(1)[0][1] == 1
    assert all(len(record["conversations"]) == 4 for record in records)
    assert summary.num_resumed + summary.num_done == 60 and summary.num_resumed >= 20
    assert not list((output_dir / "shards").glob("*.partial")) and (output_dir / "failed.jsonl").read_text() == ""


def test_a_rerun_with_another_input_or_shard_size_is_refused(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(0)])
    with FakeOpenAIServer() as server:
        sample(config_for(server, data, tmp_path / "out", shard_size=4))
        with pytest.raises(Eagle3Error, match="holds a run with shard_size=4, not 5"):
            sample(config_for(server, data, tmp_path / "out", shard_size=5))


def test_api_key_is_sent_but_never_written(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [sharegpt(0)])
    with FakeOpenAIServer() as server:
        sample(config_for(server, data, tmp_path / "out", api_key="sk-secret"))
        assert server.chat_requests()[0]["_authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in (tmp_path / "out" / "config.json").read_text()
