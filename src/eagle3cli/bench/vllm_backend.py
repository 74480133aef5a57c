"""``eagle3 bench --backend vllm``: the bench questions through vLLM's own speculative decoding.

The same questions as the built-in decoder, asked the same way: turn by turn, each prompt the
whole conversation so far (earlier answers included) rendered by the project's chat template
with the generation prompt, stopping at the template's end-of-turn tokens; question ``i``
samples with seed ``seed + i``; one untimed warm-up question first. With a draft, vLLM drafts
a chain of ``num_speculative_tokens`` tokens per step (``method: eagle3``); without, it is the
baseline. One engine per call, so ``both`` modes are two calls.

Acceptance comes from vLLM's own counters (``LLM.get_metrics()``), attributed to each turn:
``τ = 1 + accepted / drafts`` and per-position acceptance ``accepted_per_position[i] / drafts``.
A turn's ``accept_lengths`` are rebuilt from those counts (see
:meth:`~eagle3cli.bench.vllm_engine.SpecCounters.accept_lengths`: same multiset, sorted), so
the report's τ and per-position figures equal vLLM's. ``wall_time`` is measured inside the
worker around ``LLM.generate``.

Because vLLM loads a bad draft silently (zero ``d2t`` offsets, uninitialised weights), the
draft is checked against the target (:func:`~eagle3cli.draft.checkpoint.check_fits_target`)
before vLLM sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from eagle3cli.bench.questions import Question
from eagle3cli.bench.report import QuestionResult, TurnResult, mode_figures
from eagle3cli.bench.vllm_engine import SpecCounters, VllmEngine
from eagle3cli.chat_template import TemplateName, end_of_turn_token_ids, render_generation_prompt
from eagle3cli.data.records import Turn
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.spec import TargetSpec
from eagle3cli.vllm_process import cpu_chunked_prefill_off, resolve_vllm_python

VllmQuestionCallback = Callable[[QuestionResult], None]


@dataclass(frozen=True)
class TurnSettings:
    """How every turn is asked (the same for the warm-up and the timed questions)."""

    template: TemplateName
    enable_thinking: bool
    system_prompt: str | None
    sampling: dict[str, Any]  # SamplingParams fields shared by all turns (seed set per question)


class VllmBenchRun(NamedTuple):
    """Answers to the timed questions, and the run's figures (:func:`run_figures`)."""

    results: list[QuestionResult]
    metrics: dict[str, Any]


def run_vllm_questions(
    questions: Sequence[Question],
    *,
    target: TargetSpec,
    draft_dir: Path | None,
    log_path: Path,
    num_speculative_tokens: int = 3,
    draft_tensor_parallel_size: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    chat_template: TemplateName = "auto",
    enable_thinking: bool = False,
    system_prompt: str | None = None,
    seed: int = 42,
    vllm_python: str | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    engine_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    on_question: VllmQuestionCallback | None = None,
    cpu: bool = False,
) -> VllmBenchRun:
    """Answer ``questions`` turn by turn with vLLM: speculative decoding with the EAGLE-3 draft
    at ``draft_dir`` (a local folder; a chain of ``num_speculative_tokens``), or the plain target
    when it is None. ``target``'s tokenizer must be checked against ``chat_template`` for
    generation prompts (:func:`~eagle3cli.target.spec.resolve_target` with ``generation_only``).
    ``dtype`` goes to vLLM as is: pass ``float32`` on CPU (vLLM's bf16 there gives garbage).

    ``engine_args`` are extra ``vllm.LLM`` arguments (e.g. ``enforce_eager``), ``env`` extra
    environment variables for vLLM (e.g. ``VLLM_CPU_KVCACHE_SPACE``); vLLM's output goes to
    ``log_path``. ``cpu``: vLLM's CPU build runs it (chunked prefill off unless ``engine_args``
    name it: :func:`~eagle3cli.vllm_process.cpu_chunked_prefill_off`). Raises
    :class:`Eagle3Error` for a draft that does not fit the target, or a vLLM that fails to start
    or answer.
    """
    from eagle3cli.draft.checkpoint import check_fits_target
    from eagle3cli.draft.convert import vllm_loadable

    if not questions:
        raise Eagle3Error("no questions to answer")
    tokenizer, target_dir = target.tokenizer, target.directory
    if draft_dir is not None:  # vLLM would load a misfit silently
        check_fits_target(Path(draft_dir), target_dir, target.config)
    python = resolve_vllm_python(vllm_python)
    settings = TurnSettings(chat_template, enable_thinking, system_prompt, {
        "temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens,
        "stop_token_ids": end_of_turn_token_ids(tokenizer, chat_template), "detokenize": False,
    })
    with ExitStack() as stack:
        if draft_dir is not None:  # a layout vLLM misreads is served through its eagle3 conversion
            draft_dir = stack.enter_context(vllm_loadable(Path(draft_dir), target_dir, Path(log_path).parent))
        arguments = vllm_engine_args(
            target_dir, draft_dir, num_speculative_tokens=num_speculative_tokens, dtype=dtype,
            max_model_len=max_model_len, seed=seed, extra=engine_args, draft_tensor_parallel_size=draft_tensor_parallel_size,
            cpu=cpu,
        )
        engine = stack.enter_context(VllmEngine(python, arguments, log_path=log_path, env=env, cpu=cpu))
        answer_question(engine, tokenizer, questions[0], settings, seed)  # warm-up
        results, counters = answer_questions(engine, tokenizer, questions, settings, seed, on_question)
    return VllmBenchRun(results, run_figures(results, counters, engine, num_speculative_tokens if draft_dir else 0))


def answer_questions(
    engine: VllmEngine,
    tokenizer: Any,
    questions: Sequence[Question],
    settings: TurnSettings,
    seed: int,
    on_question: VllmQuestionCallback | None,
) -> tuple[list[QuestionResult], SpecCounters]:
    """Every question in order (question ``i`` with seed ``seed + i``) and the counters they added."""
    results, counters = [], SpecCounters()
    for index, question in enumerate(questions):
        result, question_counters = answer_question(engine, tokenizer, question, settings, seed + index)
        results.append(result)
        counters += question_counters
        if on_question is not None:
            on_question(result)
    return results, counters


def vllm_engine_args(
    target_dir: Path,
    draft_dir: Path | None,
    *,
    num_speculative_tokens: int,
    dtype: str,
    max_model_len: int | None,
    seed: int,
    extra: Mapping[str, Any] | None = None,
    draft_tensor_parallel_size: int = 1,
    cpu: bool = False,
) -> dict[str, Any]:
    """``vllm.LLM`` arguments: the target, and with a draft the EAGLE-3 speculative config; on
    vLLM's CPU build (``cpu``) chunked prefill off unless ``extra`` names it."""
    if num_speculative_tokens < 1:
        raise Eagle3Error(f"--num-speculative-tokens must be at least 1, got {num_speculative_tokens}")
    arguments: dict[str, Any] = {"model": str(target_dir), "dtype": dtype, "seed": seed}
    if max_model_len is not None:
        arguments["max_model_len"] = max_model_len
    if draft_dir is not None:
        arguments["speculative_config"] = {
            "method": "eagle3", "model": str(draft_dir), "num_speculative_tokens": num_speculative_tokens,
        }
        if draft_tensor_parallel_size > 1:
            arguments["speculative_config"]["draft_tensor_parallel_size"] = draft_tensor_parallel_size
    arguments |= dict(extra or {})
    if cpu and cpu_chunked_prefill_off(arguments):
        arguments["enable_chunked_prefill"] = False
    return arguments


def answer_question(
    engine: VllmEngine, tokenizer: Any, question: Question, settings: TurnSettings, seed: int
) -> tuple[QuestionResult, SpecCounters]:
    """Ask every turn in order (each prompt the whole conversation so far); the answers and
    what they added to vLLM's acceptance counters."""
    turns: list[Turn] = []
    results = []
    counters = SpecCounters()
    for user_text in question.turns:
        turns.append(Turn("user", user_text))
        prompt = render_generation_prompt(
            tokenizer, turns, template=settings.template,
            enable_thinking=settings.enable_thinking, system_prompt=settings.system_prompt,
        )
        generation = engine.generate(prompt, settings.sampling | {"seed": seed})
        text = tokenizer.decode(generation.token_ids, skip_special_tokens=True)
        turns.append(Turn("assistant", text))
        results.append(TurnResult(
            text, len(generation.token_ids), generation.wall_time,
            accept_lengths=generation.spec.accept_lengths(), token_ids=generation.token_ids,
        ))
        counters += generation.spec
    return QuestionResult(question.question_id, question.category, results), counters


def run_figures(
    results: Sequence[QuestionResult], counters: SpecCounters, engine: VllmEngine, num_speculative_tokens: int
) -> dict[str, Any]:
    """The report's figures for these answers (tokens/s, τ), the backend's facts and, with a
    draft, vLLM's own counters over the timed questions (warm-up excluded)."""
    figures = mode_figures(results) | {
        "backend": "vllm",
        "vllm_version": engine.vllm_version,
        "startup_seconds": engine.startup_seconds,
        "num_speculative_tokens": num_speculative_tokens,
    }
    return figures | counters.figures() if num_speculative_tokens else figures
