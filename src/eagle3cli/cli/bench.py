"""``eagle3 bench``: speculative decoding against plain decoding (AngelSlim's spec_benchmark flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import progress_bar
from eagle3cli.config import BenchConfig
from eagle3cli.configfile import resolve_config
from eagle3cli.errors import Eagle3Error

stdout = Console(highlight=False)
ANGELSLIM = "AngelSlim flags eagle3 does not need (accepted with their default)"
PANELS = {
    "Models": ("base_model_path", "eagle_model_path", "model_id", "device", "dtype", "draft_head_dtype", "target_forward", "compile"),
    "Questions and answers": ("bench_name", "bench_data", "question_begin", "question_end", "mode", "output_dir", "no_metrics"),
    "Decoding": ("temperature", "top_p", "max_new_token", "total_token", "depth", "top_k", "seed"),
    "Chat template": ("chat_template", "system_prompt", "enable_thinking"),
    "Hardware": ("num_gpus_per_model", "num_gpus_total", "max_gpu_memory"),
    "Backend": ("backend", "num_speculative_tokens", "speculative_draft_tensor_parallel_size", "vllm_python"),
}


@config_options(BenchConfig, panels=PANELS, flags={"backend": ("--backend", "--deploy-backend")})
def bench(
    overrides: dict[str, Any],
    fallbacks: dict[str, Any],
    config: ConfigOption = None,
    num_choices: Annotated[int, typer.Option("--num-choices", help="Answers per question: eagle3 gives one (use another --seed for more).", rich_help_panel=ANGELSLIM)] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="eagle3 decodes one request at a time, on both backends.", rich_help_panel=ANGELSLIM)] = 1,
    early_stop_method: Annotated[Optional[str], typer.Option("--early-stop-method", help="SpecExit early stopping: not in eagle3.", rich_help_panel=ANGELSLIM)] = None,
    generate_audio: Annotated[bool, typer.Option("--generate-audio", help="AngelSlim's speech (TTS) benchmark: not in eagle3.", rich_help_panel=ANGELSLIM)] = False,
) -> None:
    """Speculative decoding vs plain decoding: acceptance length τ, tokens/s and speed-up.

    A command line of AngelSlim's tools/spec_benchmark.py runs unchanged (--deploy-backend is --backend).

    Example: eagle3 bench --base-model-path Qwen/Qwen3-8B --eagle-model-path runs/draft --model-id qwen3-8b-eagle3 --temperature 0
    """
    refuse_angelslim_only_flags(num_choices, batch_size, early_stop_method, generate_audio)
    resolved = resolve_config(BenchConfig, config, overrides, fallbacks)
    from eagle3cli.bench.runner import modes_of, run_bench

    with progress_bar(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_start(modes: list[str], num_questions: int) -> None:
            for mode in modes:
                tasks[mode] = progress.add_task(mode, total=num_questions)

        def on_question(mode: str, _: Any) -> None:
            progress.advance(tasks[mode])

        summary = run_bench(resolved, on_start=on_start, on_question=on_question)
    print_summary(summary, modes_of(resolved), resolved.output_dir)


def refuse_angelslim_only_flags(num_choices: int, batch_size: int, early_stop_method: str | None, generate_audio: bool) -> None:
    """AngelSlim flags with no eagle3 meaning: their defaults pass, anything else is one clear error."""
    if num_choices != 1:
        raise Eagle3Error(f"--num-choices {num_choices}: eagle3 bench gives one answer per question",
                          hint="leave --num-choices out; rerun with another --seed for more answers")
    if batch_size != 1:
        raise Eagle3Error(f"--batch-size {batch_size}: eagle3 bench decodes one request at a time (per-token latency, "
                          "as AngelSlim's pytorch backend does)", hint="leave --batch-size out; for batched serving "
                          "throughput serve the draft with eagle3 serve --speculative-config")
    if early_stop_method is not None:
        raise Eagle3Error(f"--early-stop-method {early_stop_method}: eagle3 has no SpecExit early stopping; an answer "
                          "ends at the end-of-turn token or --max-new-token", hint="leave --early-stop-method out")
    if generate_audio:
        raise Eagle3Error("--generate-audio: eagle3 benchmarks text models, not AngelSlim's speech (TTS) path",
                          hint="leave --generate-audio out")


def print_summary(summary: dict[str, Any], modes: list[str], output_dir: Path) -> None:
    """The τ / tokens/s / speed-up table, overall and per category."""
    table = Table(title="eagle3 bench")
    for column in ("category", *[f"{mode} tok/s" for mode in modes], "τ", "speed-up"):
        table.add_column(column, justify="right" if column != "category" else "left")
    rows = [("all", summary["modes"], summary.get("speedup"))]
    rows += [(name, figures, figures.get("speedup")) for name, figures in sorted(summary["categories"].items())]
    for name, figures, speedup in rows:
        speeds = [f"{figures[mode]['tokens_per_second']:.1f}" for mode in modes]
        tau = figures.get("eagle", {}).get("tau")
        table.add_row(name, *speeds, f"{tau:.2f}" if tau else "-", f"{speedup:.2f}x" if speedup else "-")
    stdout.print(table)
    if summary.get("identical_turns") is not None:
        stdout.print(f"greedy answers token-identical to baseline: {summary['identical_turns']} of "
                     f"{summary['modes']['eagle']['num_turns']} turns")
    if summary.get("draft_vocabulary") is not None:
        vocabulary = summary["draft_vocabulary"]
        stdout.print(f"draft vocabulary ({vocabulary['draft_vocab_size']:,} tokens): {vocabulary['coverage']:.1%} "
                     f"of the answers' {vocabulary['answer_tokens']:,} tokens")
    if "tree_choice" in summary["settings"]:
        stdout.print(summary["settings"]["tree_choice"])
    stdout.print(f"answers and summary.json in {output_dir}")
