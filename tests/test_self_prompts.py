"""Prompts written by the target (examples/smollm2/self_prompts.py) against a fake OpenAI server:
what each request sends, which completions are kept, and why the others are dropped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from builders.fake_openai import FakeOpenAIServer, Reply
from eagle3cli.bench.questions import bundled_question_file, read_question_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "smollm2"))
import self_prompts  # noqa: E402

MT_BENCH_TURN = read_question_file(bundled_question_file("mt_bench"))[0].turns[0]
REPLIES = [
    Reply("How do I keep basil alive on a windowsill?"),
    Reply("how do I keep BASIL alive on a windowsill"),  # the same user turn, normalised
    Reply("Hi there"),  # under 3 words
    Reply("Write a very long story about", finish_reason="length"),  # cut at max_tokens
    Reply(MT_BENCH_TURN),  # a benchmark question
    Reply("Explain the rules of chess to a child."),  # already in the excluded corpus
    Reply("  What makes sourdough bread rise?  "),
    Reply("Name three rivers in South America, please."),  # past --num-prompts
]


def test_self_prompts_keep_finished_new_and_clean_user_turns(qwen3_tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "c", "conversations": [{"role": "user", "content": "explain the rules of chess to a child"}]}) + "\n")
    output = tmp_path / "self" / "prompts.jsonl"
    with FakeOpenAIServer(behaviour=lambda body, _: REPLIES[body["seed"] - 7 * 1_000_003]) as server:
        monkeypatch.setattr(sys, "argv", [
            "self_prompts.py", "--server-url", server.url, "--target", str(qwen3_tokenizer_dir), "--output", str(output),
            "--num-prompts", "2", "--max-requests", str(len(REPLIES)), "--seed", "7", "--concurrency", "3",
            "--exclude", str(corpus),
        ])
        self_prompts.main()
        requests = server.chat_requests()
    assert [json.loads(line) for line in output.read_text().splitlines()] == [
        {"id": "self-00000", "conversations": [{"role": "user", "content": "How do I keep basil alive on a windowsill?"}]},
        {"id": "self-00001", "conversations": [{"role": "user", "content": "What makes sourdough bread rise?"}]},
    ]
    report = json.loads(output.with_name("prompts.jsonl.report.json").read_text())
    assert report["counts"] == {"generated": 8, "unfinished": 1, "under 3 words": 1, "repeats": 2,
                                "benchmark duplicates": 1, "over the limit": 1, "kept": 2}
    assert sorted(body["seed"] for body in requests) == [7 * 1_000_003 + i for i in range(len(REPLIES))]
    body = requests[0]
    assert body["_path"] == "/v1/completions" and body["model"] == "tiny-target" and "n" not in body
    assert body["prompt"].endswith("<|im_start|>user\n") and body["stop"] == ["<|im_end|>"]


def test_a_template_without_the_users_text_is_one_clear_error() -> None:
    class Tokenizer:
        eos_token = "</s>"

        def apply_chat_template(self, messages, tokenize):
            return "<s>fixed</s>"

    with pytest.raises(self_prompts.Eagle3Error, match="the chat template does not show the user's text"):
        self_prompts.user_prefix(Tokenizer())
