"""Passage prompts (examples/smollm2/passage_prompts.py): which answers become passages, how a
cut answer is trimmed, follow-up turns, benchmark questions dropped, same bytes from the same seed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from eagle3cli.bench.questions import bundled_question_file, read_question_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "smollm2"))
import passage_prompts  # noqa: E402

MT_BENCH_TURN = read_question_file(bundled_question_file("mt_bench"))[0].turns[0]
FINISHED = "Tides rise and fall twice a day because the Moon pulls on the oceans. " * 6
CUT = "Bread rises because yeast makes gas. The dough traps it in a web of gluten. " * 5 + "Then the oven sets the"
SHORT = "Too short to be a passage."


def record(index: int, *answers: tuple[str, str]) -> dict:
    turns = []
    for answer, finish_reason in answers:
        turns += [{"role": "user", "content": f"question {index}"}, {"role": "assistant", "content": answer, "finish_reason": finish_reason}]
    return {"id": f"r{index}", "conversations": turns}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> Path:
    source = tmp_path / "train.jsonl"
    records = [
        record(0, (FINISHED, "stop"), (SHORT, "stop")),
        record(1, (CUT, "length")),
        record(2, (FINISHED, "stop")),  # the same answer again: one passage
        record(3, (MT_BENCH_TURN + " " + FINISHED, "stop")),  # carries a benchmark question
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / "passage" / "prompts.jsonl"
    monkeypatch.setattr(sys, "argv", ["passage_prompts.py", "--passages", str(source), "--output", str(output), *flags])
    passage_prompts.main()
    return output


def user_turns(output: Path) -> list[list[str]]:
    return [[turn["content"] for turn in json.loads(line)["conversations"]] for line in output.read_text().splitlines()]


def test_answers_become_passages_once_each_cut_answers_trimmed_benchmark_questions_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = run(tmp_path, monkeypatch, "--follow-up-rate", "1", "--seed", "3")
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in records] == ["passage-00000", "passage-00001"]
    assert all([turn["role"] for turn in r["conversations"]] == ["user", "user"] for r in records)
    assert all(r["conversations"][1]["content"] in passage_prompts.FOLLOW_UPS for r in records)
    first_turns = [r["conversations"][0]["content"] for r in records]
    trimmed = CUT[: CUT.rindex(". ") + 1]
    assert sorted(FINISHED.strip() in turn for turn in first_turns) == [False, True]
    assert sum(trimmed in turn and "Then the oven" not in turn for turn in first_turns) == 1
    report = json.loads(output.with_name("prompts.jsonl.report.json").read_text())
    assert report["counts"] == {"passages": 3, "benchmark duplicates": 1, "with a follow-up": 2, "kept": 2}


def test_same_seed_same_bytes_and_no_follow_ups_at_rate_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(tmp_path, monkeypatch, "--seed", "5").read_bytes()
    assert run(tmp_path, monkeypatch, "--seed", "5").read_bytes() == first
    assert [len(turns) for turns in user_turns(run(tmp_path, monkeypatch, "--follow-up-rate", "0"))] == [1, 1]


def test_a_passage_after_the_instruction_is_called_the_text_below_and_before_it_the_text_above() -> None:
    for seed in range(200):
        text = passage_prompts.prompt(random.Random(seed), "PASSAGE")
        before, _, after = text.partition("PASSAGE")
        assert "below" not in after and "following" not in after
        assert "above" not in before


def test_a_line_that_is_not_a_record_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "train.jsonl"
    source.write_text(json.dumps(record(0, (FINISHED, "stop"))) + "\n{not json\n")
    monkeypatch.setattr(sys, "argv", ["passage_prompts.py", "--passages", str(source), "--output", str(tmp_path / "out.jsonl")])
    with pytest.raises(SystemExit) as stopped:
        passage_prompts.main()
    assert str(stopped.value).startswith(f"error: {source}, line 2: invalid JSON")
    assert not (tmp_path / "out.jsonl").exists()
