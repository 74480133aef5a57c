"""Run the benchmark: load target (+ draft), answer every question turn by turn in each mode,
write answer files, ``summary.json`` and the plot.

Both modes answer the same questions with the same limits, after one untimed warm-up
question. A later turn continues the earlier turns' decoding state (the context is extended,
not recomputed).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eagle3cli.bench.questions import Question, load_questions, select_questions
from eagle3cli.bench.report import QuestionResult, TurnResult, plot_summary, summarize, vocabulary_coverage
from eagle3cli.chat_template import end_of_turn_token_ids, render_generation_prompt
from eagle3cli.config import BenchConfig
from eagle3cli.configfile import write_resolved_config
from eagle3cli.data.records import Turn
from eagle3cli.decoding import DecodingConfig, generate
from eagle3cli.decoding.fused_draft import fuse_draft_layer
from eagle3cli.decoding.fused_target import FusedTarget, unfused_reason
from eagle3cli.decoding.layout import PACK_ROWS, cpu_linears
from eagle3cli.decoding.target import HFTarget, StaticTarget, use_gqa_sdpa
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, atomic_write_text
from eagle3cli.outputs import claimed_output_dir
from eagle3cli.target.loading import load_target, native_bf16, resolve_device, resolve_dtype
from eagle3cli.target.spec import TargetSpec, resolve_target

QuestionCallback = Callable[[str, QuestionResult], None]


@dataclass
class BenchModels:
    """What answering needs: the wrapped target, the draft (None for baseline only), tokenizer."""

    target: HFTarget
    draft: torch.nn.Module | None
    tokenizer: Any
    device: torch.device


def modes_of(config: BenchConfig) -> list[str]:
    return ["baseline", "eagle"] if config.mode == "both" else [config.mode]


def resolve_head_dtype(choice: str, device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The draft head's dtype: ``auto`` is bfloat16 on a CPU that multiplies it natively
    (benchmarks/cpu_step.py: a 32k x 576 head 11.5 ms in float32, 3.5 ms in bfloat16), else ``dtype``."""
    if choice != "auto":
        return getattr(torch, choice)
    if device.type == "cpu" and native_bf16(device):
        return torch.bfloat16
    return dtype


def bench_target(config: BenchConfig) -> TargetSpec:
    """The target, its tokenizer checked for generation prompts in the bench's chat template."""
    return resolve_target(config.base_model_path, chat_template=config.chat_template,
                          enable_thinking=config.enable_thinking, generation_only=True)


def load_models(config: BenchConfig) -> BenchModels:
    """Target from ``base_model_path``; the draft (reusing the target's embedding) when needed.
    The chat template and the draft are checked before the target's weights are loaded. On a
    CPU, float32 weight matrices (and bfloat16 ones where bf16 is native) are packed for oneDNN,
    or else float32 ones stored column-major (``decoding.layout``), for baseline and eagle alike."""
    from eagle3cli.draft.checkpoint import build_draft, check_fits_target
    from eagle3cli.target.hub import resolve_model_dir

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    target = bench_target(config)
    checkpoint = None
    if config.mode != "baseline":
        assert config.eagle_model_path is not None  # the config requires it outside baseline mode
        checkpoint = check_fits_target(resolve_model_dir(config.eagle_model_path), target.directory, target.config)
    model = load_target(target.directory, dtype=dtype, device=device,
                        num_gpus=config.num_gpus_per_model, max_gpu_memory=config.max_gpu_memory)
    aux_layer_ids: tuple[int, ...] = (0,)
    draft = None
    if checkpoint is not None:
        assert checkpoint.config is not None  # a checkpoint without problems has one
        # the target's embedding, shared: no draft-sized copy of a large vocabulary is made
        draft = build_draft(checkpoint.config, checkpoint.tensors, checkpoint.directory, embed_tokens=model.get_input_embeddings())
        draft = draft.to(device=device, dtype=dtype).eval()
        draft.lm_head.to(resolve_head_dtype(config.draft_head_dtype, device, dtype))
        aux_layer_ids = draft.config.aux_layer_ids
    decoder_target = target_forward(model, aux_layer_ids, config, device)
    if device.type == "cpu":
        lay_out_for_cpu(decoder_target, draft)
    return BenchModels(decoder_target, draft, target.tokenizer, device)


def lay_out_for_cpu(target: HFTarget, draft: torch.nn.Module | None) -> None:
    """Ready target and draft for decoding on this CPU: the fused target's own projections
    packed (the model keeps its matrices), or else the model's, with grouped-query attention that
    reads shared keys and values without a copy per query head; the draft's layer fused (q/k/v
    and gate/up stacked) and its linears packed. With ``--compile`` no product is packed:
    inductor lays them out (and cannot lower oneDNN's packed ones)."""
    bf16 = native_bf16(torch.device("cpu"))
    compiled = isinstance(target, StaticTarget)  # --compile: inductor lays out the products itself
    if isinstance(target, FusedTarget):
        cpu_linears(target.fused, bf16=bf16, keep_weights=False)
    elif not compiled:
        use_gqa_sdpa(target.model)  # tree verification without a copy of the cache per layer
        cpu_linears(target.model, bf16=bf16)
    if draft is not None:
        fuse_draft_layer(draft)
        if not compiled:
            cpu_linears(draft, bf16=bf16)


def target_forward(model: torch.nn.Module, aux_layer_ids: tuple[int, ...], config: BenchConfig, device: torch.device) -> HFTarget:
    """The decoder's view of the target: with ``--compile`` the model's own forward over a static
    cache, compiled (:class:`StaticTarget`); else :class:`FusedTarget` when chosen, or for ``auto``
    on a CPU where the model allows it (on SmolLM2 it takes ~17 % off decode(1) and ~11 % off a
    16-node verification); else the model's own forward (:class:`HFTarget`). ``fused`` on a
    model it cannot run stops with the reason."""
    if config.compile:
        return StaticTarget(model, aux_layer_ids, compile=True)
    choice = config.target_forward
    if choice == "fused" or (choice == "auto" and device.type == "cpu" and unfused_reason(model) is None):
        return FusedTarget(model, aux_layer_ids)
    return HFTarget(model, aux_layer_ids)


def decoding_config(config: BenchConfig, tokenizer: Any) -> DecodingConfig:
    """The decoder's settings (an ``auto`` tree value, left only in baseline mode, is unused there)."""
    total_token, depth, top_k = (default if value == "auto" else int(value)
                                 for value, default in zip((config.total_token, config.depth, config.top_k), (60, 5, 10)))
    return DecodingConfig(total_token, depth, top_k, temperature=config.temperature, top_p=config.top_p,
                          max_new_tokens=config.max_new_token, stop_token_ids=tuple(end_of_turn_token_ids(tokenizer, config.chat_template)),
                          compile_draft=config.compile)


def prompt_ids(models: BenchModels, turns: list[Turn], config: BenchConfig) -> torch.Tensor:
    """The conversation so far, rendered with the generation prompt, as ids on the models' device."""
    prompt = render_generation_prompt(
        models.tokenizer, turns, template=config.chat_template,
        enable_thinking=config.enable_thinking, system_prompt=config.system_prompt,
    )
    return torch.tensor(prompt, device=models.device)


def answer_question(
    models: BenchModels, question: Question, mode: str, config: BenchConfig, seed: int
) -> QuestionResult:
    """Ask every turn in order; each turn's prompt is the whole conversation so far."""
    decoding = decoding_config(config, models.tokenizer)
    generator = torch.Generator(models.device).manual_seed(seed)
    turns: list[Turn] = []
    results: list[TurnResult] = []
    state = None
    with torch.inference_mode():
        for user_text in question.turns:
            turns.append(Turn("user", user_text))
            input_ids = prompt_ids(models, turns, config)
            started = clock(models.device)
            generation = generate(models.target, models.draft if mode == "eagle" else None, input_ids, decoding,
                                  state=state, generator=generator)
            wall_time = clock(models.device) - started
            state = generation.state
            text = models.tokenizer.decode(generation.tokens.tolist(), skip_special_tokens=True)
            turns.append(Turn("assistant", text))
            stats = generation.stats
            accept = stats.accept_lengths if mode == "eagle" else []
            results.append(TurnResult(text, stats.num_new_tokens, wall_time, list(accept), generation.tokens.tolist()))
    return QuestionResult(question.question_id, question.category, results)


def clock(device: torch.device) -> float:
    """Wall time once the device has finished its queued work: the bench times whole turns,
    so the decoder itself never waits on the device for timing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def answer_file(config: BenchConfig, mode: str) -> Path:
    return config.output_dir / f"{config.model_id}-temperature-{config.temperature}-{mode}.jsonl"


def write_outputs(config: BenchConfig, modes: dict[str, list[QuestionResult]], summary: dict[str, Any]) -> None:
    output_dir = config.output_dir
    for mode, results in modes.items():
        lines = [json.dumps(result.answer_record(config.model_id), ensure_ascii=False) for result in results]
        atomic_write_text(answer_file(config, mode), "\n".join(lines) + "\n")
    atomic_write_json(output_dir / "summary.json", summary)
    if not config.no_metrics:
        plot_summary(summary, modes, output_dir / "summary.png")


def answer_all(
    config: BenchConfig, questions: list[Question], on_question: QuestionCallback | None = None
) -> dict[str, list[QuestionResult]]:
    """Load the models once and answer ``questions`` in every mode (one worker's job)."""
    torch.manual_seed(config.seed)
    return answer_with(load_models(config), config, questions, on_question)


def answer_with(
    models: BenchModels, config: BenchConfig, questions: list[Question], on_question: QuestionCallback | None = None
) -> dict[str, list[QuestionResult]]:
    """Answer ``questions`` in every mode with loaded models: one untimed warm-up question per
    mode, then question by question in each mode (seed = ``config.seed + index``), the modes
    taking turns to go first — so a drift in the machine's speed during the run reaches every
    mode alike instead of whichever ran last."""
    modes = modes_of(config)
    for mode in modes:
        answer_question(models, questions[0], mode, config, config.seed)
    results: dict[str, list[QuestionResult]] = {mode: [] for mode in modes}
    for index, question in enumerate(questions):
        for mode in modes if index % 2 == 0 else modes[::-1]:
            result = answer_question(models, question, mode, config, config.seed + index)
            results[mode].append(result)
            if on_question is not None:
                on_question(mode, result)
    return results


def calibration_speed(models: BenchModels, question: Question, config: BenchConfig) -> float:
    """Tokens/s of speculative decoding with ``config``'s tree on the first turn of ``question``."""
    from eagle3cli.bench.tree_choice import CALIBRATION_TOKENS

    decoding = decoding_config(config.model_copy(update={"max_new_token": min(config.max_new_token, CALIBRATION_TOKENS)}), models.tokenizer)
    input_ids = prompt_ids(models, [Turn("user", question.turns[0])], config)
    generator = torch.Generator(models.device).manual_seed(config.seed)
    with torch.inference_mode():
        started = clock(models.device)
        generation = generate(models.target, models.draft, input_ids, decoding, generator=generator)
        return generation.stats.num_new_tokens / (clock(models.device) - started)


def choose_auto_tree(models: BenchModels, question: Question, config: BenchConfig) -> tuple[BenchConfig, str]:
    """``config`` with its ``auto`` tree values chosen (measured, or from the cache), and why."""
    from eagle3cli.bench import tree_choice
    from eagle3cli.target.hub import resolve_model_dir

    def stamp(path: Path) -> list[Any]:
        return [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] if path.is_file() else [str(path)]

    assert config.eagle_model_path is not None and models.draft is not None
    facts = {
        "target": stamp(resolve_model_dir(config.base_model_path) / "config.json"),
        "draft": stamp(resolve_model_dir(config.eagle_model_path) / "model.safetensors"),
        "device": hardware().get("gpu") if models.device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "dtype": str(next(models.draft.parameters()).dtype),
        "head_dtype": str(models.draft.lm_head.weight.dtype),
        "head_layout": [type(models.draft.lm_head).__name__, list(models.draft.lm_head.weight.stride())],  # decoding.layout
        "pack_rows": PACK_ROWS,
        "target_forward": type(models.target).__name__, "draft_layer": type(models.draft.midlayer).__name__,
    }
    measure = lambda candidate: calibration_speed(models, question, candidate)  # noqa: E731
    choice = tree_choice.choose_tree(config, facts, models.device.type == "cuda", measure)
    return tree_choice.with_tree(config, choice.tree), choice.describe()


def draft_vocabulary(config: BenchConfig, draft: torch.nn.Module | None) -> list[bool]:
    """The draft's ``t2d`` (which target tokens it can propose): the loaded draft's, else its checkpoint's."""
    if draft is None:
        from eagle3cli.draft.checkpoint import check_fits_target
        from eagle3cli.target.hub import resolve_model_dir

        assert config.eagle_model_path is not None  # the config requires it outside baseline mode
        target = bench_target(config)
        draft_dir = resolve_model_dir(config.eagle_model_path)
        return check_fits_target(draft_dir, target.directory, target.config).tensors["t2d"].tolist()
    return draft.t2d.tolist()


def gpu_groups(config: BenchConfig) -> list[list[int]]:
    """GPU ids per worker: ``num_gpus_total / num_gpus_per_model`` groups (none for one CPU worker)."""
    visible = torch.cuda.device_count()
    on_gpu = resolve_device(config.device).type == "cuda"
    if config.num_gpus_total > max(visible, 1) or (config.num_gpus_total > 1 and not on_gpu):
        raise Eagle3Error(
            f"--num-gpus-total {config.num_gpus_total} asks for {config.num_gpus_total} GPUs, but this machine has "
            f"{visible} CUDA device(s) visible" + ("" if on_gpu else f" (--device {config.device} runs on the CPU)"),
            hint=f"use --num-gpus-total {max(visible, 1)} or fewer, or set CUDA_VISIBLE_DEVICES",
        )
    if not on_gpu:
        return []
    per_model = config.num_gpus_per_model
    return [list(range(start, start + per_model)) for start in range(0, config.num_gpus_total, per_model)]


def _worker(config_json: str, questions: list[Question], gpu_ids: list[int] | None) -> dict[str, list[QuestionResult]]:
    """Entry point of a spawned worker: see only its GPUs, answer its slice."""
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in gpu_ids)
    return answer_all(BenchConfig.model_validate_json(config_json), questions)


def run_workers(
    config: BenchConfig, questions: list[Question], groups: list[list[int] | None]
) -> dict[str, list[QuestionResult]]:
    """Deal ``questions`` round-robin to one spawned process per group; merge in question order."""
    import multiprocessing

    slices = [questions[index::len(groups)] for index in range(len(groups))]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(groups)) as pool:
        outputs = pool.starmap(_worker, [(config.model_dump_json(), part, group) for part, group in zip(slices, groups)])
    order = {question.question_id: index for index, question in enumerate(questions)}
    return {
        mode: sorted((result for output in outputs for result in output[mode]), key=lambda r: order[r.question_id])
        for mode in modes_of(config)
    }


def run_vllm_modes(
    config: BenchConfig, questions: list[Question], on_question: QuestionCallback | None
) -> tuple[dict[str, list[QuestionResult]], dict[str, Any]]:
    """Every mode through vLLM's own engine: eagle = speculative (a chain), baseline = the target alone."""
    from eagle3cli.bench.vllm_backend import run_vllm_questions
    from eagle3cli.target.hub import resolve_model_dir

    device = resolve_device(config.device)
    dtype = "float32" if config.dtype == "auto" and device.type == "cpu" else config.dtype
    target = bench_target(config)
    modes: dict[str, list[QuestionResult]] = {}
    metrics: dict[str, Any] = {}
    for mode in modes_of(config):
        draft_dir = resolve_model_dir(config.eagle_model_path) if mode == "eagle" else None
        run = run_vllm_questions(
            questions, target=target, draft_dir=draft_dir,
            log_path=config.output_dir / f"vllm-{mode}.log", num_speculative_tokens=config.num_speculative_tokens,
            draft_tensor_parallel_size=config.speculative_draft_tensor_parallel_size,
            temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_token,
            chat_template=config.chat_template, enable_thinking=config.enable_thinking,
            system_prompt=config.system_prompt, seed=config.seed, vllm_python=config.vllm_python, dtype=dtype,
            on_question=None if on_question is None else (lambda result, mode=mode: on_question(mode, result)),
            cpu=device.type == "cpu",
        )
        modes[mode], metrics[mode] = run.results, run.metrics
    return modes, metrics


def run_bench(
    config: BenchConfig,
    *,
    on_start: Callable[[list[str], int], None] | None = None,
    on_question: QuestionCallback | None = None,
) -> dict[str, Any]:
    """Answer the selected questions in each mode; write answers, summary and plot; return the summary.

    ``on_start(modes, num_questions)`` is called once the questions are known, before any model loads.
    """
    from eagle3cli.bench.tree_choice import is_auto

    questions = select_questions(load_questions(config.bench_name, config.bench_data), config.question_begin, config.question_end)
    groups = [] if config.backend == "vllm" else gpu_groups(config)
    auto_tree = is_auto(config) and config.mode != "baseline"
    if auto_tree and len(groups) > 1:
        raise Eagle3Error("--total-token/--depth/--top-k auto calibrate on one model",
                          hint="run once with --num-gpus-total 1 to choose the tree (it is cached), then pass it explicitly")
    tree_note = used_forward = draft = None
    with claimed_output_dir(config.output_dir, "bench") as output_dir:
        write_resolved_config(config, output_dir)
        if on_start is not None:
            on_start(modes_of(config), len(questions))
        vllm_metrics: dict[str, Any] = {}
        if config.backend == "vllm":
            modes, vllm_metrics = run_vllm_modes(config, questions, on_question)
        elif len(groups) > 1:
            modes = run_workers(config, questions, groups)
        else:
            torch.manual_seed(config.seed)
            models = load_models(config)
            draft = models.draft
            used_forward = ("fused" if isinstance(models.target, FusedTarget)
                            else "transformers, compiled" if isinstance(models.target, StaticTarget) else "transformers")
            if auto_tree:
                config, tree_note = choose_auto_tree(models, questions[0], config)
            modes = answer_with(models, config, questions, on_question)
        settings = config.model_dump(mode="json") | {"num_questions": len(questions), "num_workers": max(1, len(groups))}
        if used_forward is not None:
            settings["target_forward"] = used_forward
        if tree_note is not None:
            settings["tree_choice"] = tree_note
        summary = summarize(modes, settings, hardware())
        for mode, metrics in vllm_metrics.items():
            summary["modes"][mode]["vllm"] = metrics
        if "eagle" in modes:
            summary["draft_vocabulary"] = vocabulary_coverage(modes["eagle"], draft_vocabulary(config, draft))
        write_outputs(config, modes, summary)
    return summary
