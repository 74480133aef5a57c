"""``eagle3 bench --backend vllm`` (library half): questions through vLLM's speculative decoding.

Fast tests cover the acceptance arithmetic, the turn-by-turn prompts (with a stand-in
engine), the engine arguments, the draft check and a worker that cannot start. The slow test
runs the real vLLM on the crafted cycle target (``builders/cycle_models.py``) with and
without its draft: same answers, the cycle's, and vLLM's acceptance carried into the report.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from builders.cycle_models import save_cycle_drafts, save_cycle_target
from eagle3cli.bench.questions import Question
from eagle3cli.bench.report import acceptance_by_position, summarize
from eagle3cli.bench.vllm_backend import (
    TurnSettings,
    answer_question,
    run_vllm_questions,
    vllm_engine_args,
)
from eagle3cli.bench.vllm_engine import SpecCounters, VllmEngine, VllmGeneration
from eagle3cli.chat_template import render_generation_prompt
from eagle3cli.data.records import Turn
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.spec import resolve_target
from vllm_env import vllm_python  # noqa: F401
from vllm_offline import FAST_ENGINE_ARGS, FAST_ENGINE_ENV, MAX_MODEL_LEN

QUESTIONS = [
    Question(81, "writing", ("Write a short poem about the sea.", "Now make it rhyme.")),
    Question(82, "math", ("What is 12 * 7?",)),
]


def test_accept_lengths_rebuilt_from_vllm_counters_give_vllms_tau_and_per_position_rates() -> None:
    counters = SpecCounters(num_drafts=5, num_draft_tokens=15, num_accepted_tokens=7, accepted_per_position=(4, 2, 1))
    lengths = counters.accept_lengths()
    assert lengths == [1, 2, 2, 3, 4]
    assert sum(lengths) / len(lengths) == pytest.approx(counters.mean_acceptance_length) == 2.4
    assert acceptance_by_position(lengths) == pytest.approx(counters.acceptance_by_position) == [0.8, 0.4, 0.2]
    assert counters.acceptance_rate == pytest.approx(7 / 15)
    total = counters + SpecCounters(2, 6, 6, (2, 2, 2))
    assert total == SpecCounters(7, 21, 13, (6, 4, 3))
    assert SpecCounters() + counters == counters and SpecCounters().accept_lengths() == []


class RecordingEngine:
    """Stands in for :class:`VllmEngine`: records requests, answers with canned generations."""

    def __init__(self, generations: list[VllmGeneration]) -> None:
        self.generations = generations
        self.requests: list[tuple[list[int], dict[str, Any]]] = []

    def generate(self, prompt_token_ids: list[int], sampling: dict[str, Any]) -> VllmGeneration:
        self.requests.append((list(prompt_token_ids), dict(sampling)))
        return self.generations[len(self.requests) - 1]


def test_each_turn_is_asked_with_the_whole_conversation_so_far(qwen3_tokenizer: PreTrainedTokenizerBase) -> None:
    first, second = qwen3_tokenizer.encode("The sea is blue."), qwen3_tokenizer.encode("Blue and true.")
    engine = RecordingEngine([
        VllmGeneration(first, "stop", 0.5, SpecCounters(2, 6, 4, (2, 1, 1))),
        VllmGeneration(second, "length", 0.25, SpecCounters(1, 3, 3, (1, 1, 1))),
    ])
    settings = TurnSettings("qwen3", False, "Be brief.", {"temperature": 0.0, "max_tokens": 16})
    result, counters = answer_question(engine, qwen3_tokenizer, QUESTIONS[0], settings, seed=7)  # type: ignore[arg-type]

    user_1, user_2 = (Turn("user", text) for text in QUESTIONS[0].turns)
    expected_prompts = [
        render_generation_prompt(qwen3_tokenizer, [user_1], template="qwen3", system_prompt="Be brief."),
        render_generation_prompt(
            qwen3_tokenizer, [user_1, Turn("assistant", "The sea is blue."), user_2], template="qwen3", system_prompt="Be brief."
        ),
    ]
    assert [prompt for prompt, _ in engine.requests] == expected_prompts
    assert [sampling for _, sampling in engine.requests] == [{"temperature": 0.0, "max_tokens": 16, "seed": 7}] * 2
    assert (result.question_id, result.category) == (81, "writing")
    assert [turn.text for turn in result.turns] == ["The sea is blue.", "Blue and true."]
    assert [turn.token_ids for turn in result.turns] == [first, second]
    assert [turn.new_tokens for turn in result.turns] == [len(first), len(second)]
    assert [turn.accept_lengths for turn in result.turns] == [[2, 4], [4]]
    assert counters == SpecCounters(3, 9, 7, (3, 2, 2))


def test_engine_arguments_add_an_eagle3_chain_only_with_a_draft(tmp_path: Path) -> None:
    baseline = vllm_engine_args(tmp_path / "t", None, num_speculative_tokens=3, dtype="auto", max_model_len=None, seed=1)
    assert baseline == {"model": str(tmp_path / "t"), "dtype": "auto", "seed": 1}
    eagle = vllm_engine_args(
        tmp_path / "t", tmp_path / "d", num_speculative_tokens=5, dtype="float32", max_model_len=512, seed=1,
        extra={"enforce_eager": True},
    )
    assert eagle["speculative_config"] == {"method": "eagle3", "model": str(tmp_path / "d"), "num_speculative_tokens": 5}
    assert (eagle["max_model_len"], eagle["enforce_eager"]) == (512, True)
    with pytest.raises(Eagle3Error, match="at least 1"):
        vllm_engine_args(tmp_path / "t", tmp_path / "d", num_speculative_tokens=0, dtype="auto", max_model_len=None, seed=1)


def test_vllm_cpu_engines_prefill_unchunked_unless_the_engine_arguments_say_otherwise(tmp_path: Path) -> None:
    """vLLM 0.32's CPU runner dies on a seeded request whose prefill it split (see serve)."""
    common = dict(num_speculative_tokens=3, dtype="float32", max_model_len=None, seed=1)
    assert vllm_engine_args(tmp_path / "t", None, cpu=True, **common)["enable_chunked_prefill"] is False
    assert "enable_chunked_prefill" not in vllm_engine_args(tmp_path / "t", None, **common)  # a GPU keeps vLLM's default
    chosen = vllm_engine_args(tmp_path / "t", None, cpu=True, extra={"enable_chunked_prefill": True}, **common)
    assert chosen["enable_chunked_prefill"] is True


def test_vllm_on_a_cpu_gets_every_core_and_no_aot_compile_cache_unless_the_caller_chose(
    tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's offline engine on its CPU build otherwise keeps one of two cores idle (see serve)."""
    from eagle3cli.bench import vllm_backend

    class Started(Exception):
        pass

    engines: list[VllmEngine] = []

    def engine(python: str, arguments: dict[str, Any], **settings: Any) -> None:
        engines.append(VllmEngine(python, arguments, **settings))  # built, never started
        raise Started

    monkeypatch.setattr(vllm_backend, "VllmEngine", engine)
    monkeypatch.setattr(vllm_backend, "resolve_vllm_python", lambda python: "py")
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")  # the caller's choice stays
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    spec = resolve_target(target.directory, chat_template="qwen3", generation_only=True)
    for cpu in (True, False):
        with pytest.raises(Started):
            run_vllm_questions(QUESTIONS, target=spec, draft_dir=None, log_path=tmp_path / "vllm.log",
                               env={"VLLM_CPU_KVCACHE_SPACE": "1"}, cpu=cpu)
    on_cpu, on_gpu = (engine.env for engine in engines)
    assert (on_cpu["VLLM_CPU_NUM_OF_RESERVED_CPU"], on_cpu["VLLM_USE_AOT_COMPILE"], on_cpu["VLLM_CPU_KVCACHE_SPACE"]) == ("0", "1", "1")
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in on_gpu and on_gpu["VLLM_CPU_KVCACHE_SPACE"] == "1"  # a GPU engine: vLLM's defaults


def test_a_draft_vllm_would_load_silently_wrong_is_refused_first(
    tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase
) -> None:
    from eagle3cli.draft.checkpoint import check_fits_target

    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    draft, _ = save_cycle_drafts(tmp_path, target)
    spec = resolve_target(target.directory, chat_template="qwen3", generation_only=True)
    check_fits_target(draft, spec.directory, spec.config)
    weights = load_file(draft / "model.safetensors")
    del weights["d2t"]  # vLLM would run this with zero offsets and accept nothing
    save_file(weights, draft / "model.safetensors")
    with pytest.raises(Eagle3Error, match="missing tensor 'd2t'"):  # before any vLLM is looked for
        run_vllm_questions(QUESTIONS, target=spec, draft_dir=draft, log_path=tmp_path / "vllm.log", vllm_python=sys.executable)


def test_an_engine_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    engine = VllmEngine(sys.executable, {"model": "unused"}, log_path=tmp_path / "vllm.log")  # no vllm here
    with pytest.raises(Eagle3Error, match="No module named 'vllm'") as error, engine:
        pass
    assert "Traceback" in str(error.value) and engine.process is None


@pytest.mark.slow
def test_vllm_answers_the_questions_as_the_target_would_and_reports_its_acceptance(
    vllm_python: str, tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase
) -> None:
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    draft, _ = save_cycle_drafts(tmp_path, target)
    settings = dict(
        target=resolve_target(target.directory, chat_template="qwen3", generation_only=True), num_speculative_tokens=3, temperature=0.0, max_new_tokens=32, chat_template="qwen3",
        seed=3, vllm_python=vllm_python, dtype="float32", max_model_len=MAX_MODEL_LEN, engine_args=FAST_ENGINE_ARGS,
        env=FAST_ENGINE_ENV, cpu=True,  # vLLM's CPU build here: chunked prefill off, as bench passes it
    )
    with ThreadPoolExecutor(2) as pool:  # both engines load side by side
        eagle_run = pool.submit(run_vllm_questions, QUESTIONS, draft_dir=draft, log_path=tmp_path / "eagle.log", **settings)
        baseline_run = pool.submit(run_vllm_questions, QUESTIONS, draft_dir=None, log_path=tmp_path / "baseline.log", **settings)
        (eagle, eagle_figures), (baseline, baseline_figures) = eagle_run.result(), baseline_run.result()

    # The crafted target's answer depends only on the prompt's last token: the generation header's.
    header_end = render_generation_prompt(qwen3_tokenizer, [Turn("user", "hi")], template="qwen3")[-1]
    expected = target.greedy_continuation(header_end, 32)
    for results in (eagle, baseline):
        assert [len(result.turns) for result in results] == [2, 1]
        assert all(turn.token_ids == expected and turn.new_tokens == 32 for result in results for turn in result.turns)
        assert results[0].turns[0].text == qwen3_tokenizer.decode(expected, skip_special_tokens=True)

    assert eagle_figures["num_speculative_tokens"] == 3 and eagle_figures["backend"] == "vllm"
    assert eagle_figures["acceptance_rate"] >= 0.9 and eagle_figures["mean_acceptance_length"] >= 3.7
    assert min(eagle_figures["acceptance_by_position"]) >= 0.9
    assert eagle_figures["tokens_per_second"] > 0 and eagle_figures["startup_seconds"] > 0
    assert baseline_figures["num_speculative_tokens"] == 0 and "acceptance_rate" not in baseline_figures
    assert all(turn.accept_lengths == [] for result in baseline for turn in result.turns)

    summary = summarize({"eagle": eagle, "baseline": baseline}, {}, {})
    assert summary["modes"]["eagle"]["tau"] == pytest.approx(eagle_figures["mean_acceptance_length"])
    assert summary["modes"]["eagle"]["acceptance_by_position"] == pytest.approx(eagle_figures["acceptance_by_position"])
    assert summary["modes"]["eagle"]["new_tokens"] == eagle_figures["new_tokens"] == 3 * 32
