"""``eagle3 bench``: speculative decoding against plain decoding (AngelSlim's spec_benchmark flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.options import ChatTemplateOption, ConfigOption, EnableThinkingOption, SystemPromptOption
from eagle3cli.cli.progress import progress_bar
from eagle3cli.config import BenchConfig
from eagle3cli.configfile import resolve_config

stdout = Console(highlight=False)


def bench(
    base_model_path: Annotated[Optional[str], typer.Option("--base-model-path", help="Target model directory or hub id.")] = None,
    eagle_model_path: Annotated[Optional[str], typer.Option("--eagle-model-path", help="Draft checkpoint directory.")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", help="Name used in the answer files.")] = None,
    bench_name: Annotated[Optional[str], typer.Option("--bench-name", help="mt_bench (default), alpaca, gsm8k or humaneval.")] = None,
    bench_data: Annotated[Optional[str], typer.Option("--bench-data", help="question.jsonl (question_id, category, turns).")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="eagle, baseline or both (default).")] = None,
    output_dir: Annotated[Optional[str], typer.Option("--output-dir", help="Where answers, summary.json and the plot go.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature (default 1.0; 0 = greedy).")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling threshold (default 1.0).")] = None,
    max_new_token: Annotated[Optional[int], typer.Option("--max-new-token", help="Most new tokens per turn (default 1024).")] = None,
    total_token: Annotated[Optional[int], typer.Option("--total-token", help="Draft tree nodes per step (default 60).")] = None,
    depth: Annotated[Optional[int], typer.Option("--depth", help="Draft tree depth (default 5).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Children per tree node (default 10; 1 = chain).")] = None,
    num_gpus_per_model: Annotated[Optional[int], typer.Option("--num-gpus-per-model", help="GPUs per model (default 1).")] = None,
    num_gpus_total: Annotated[Optional[int], typer.Option("--num-gpus-total", help="GPUs in all (default 1).")] = None,
    max_gpu_memory: Annotated[Optional[str], typer.Option("--max-gpu-memory", help="Memory cap per GPU, e.g. 70GiB.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 42).")] = None,
    question_begin: Annotated[Optional[int], typer.Option("--question-begin", help="First question index.")] = None,
    question_end: Annotated[Optional[int], typer.Option("--question-end", help="Stop before this question index.")] = None,
    no_metrics: Annotated[Optional[bool], typer.Option("--no-metrics", help="Skip the PNG plot.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto (default), cpu, cuda or cuda:N.")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto (default), float32, bfloat16 or float16.")] = None,
    chat_template: ChatTemplateOption = None,
    system_prompt: SystemPromptOption = None,
    enable_thinking: EnableThinkingOption = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="hf (built-in tree decoder, default) or vllm (vLLM's own speculative decoding).")] = None,
    num_speculative_tokens: Annotated[Optional[int], typer.Option("--num-speculative-tokens", help="vllm backend: draft tokens per step (default 3).")] = None,
    vllm_python: Annotated[Optional[str], typer.Option("--vllm-python", help="vllm backend: Python that has vLLM installed.")] = None,
    config: ConfigOption = None,
) -> None:
    """Speculative decoding vs plain decoding: acceptance length τ, tokens/s and speed-up.

    Example: eagle3 bench --base-model-path Qwen/Qwen3-8B --eagle-model-path runs/draft --model-id qwen3-8b-eagle3
    --bench-data question.jsonl --temperature 0 --output-dir runs/bench
    """
    overrides = {key: value for key, value in locals().items() if key != "config"}
    resolved = resolve_config(BenchConfig, config, overrides)
    from eagle3cli.bench.runner import modes_of, run_bench

    with progress_bar(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_question(mode: str, _: Any) -> None:
            if mode not in tasks:
                tasks[mode] = progress.add_task(mode, total=None)
            progress.advance(tasks[mode])

        summary = run_bench(resolved, on_question=on_question)
    print_summary(summary, modes_of(resolved), Path(resolved.output_dir))


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
    stdout.print(f"answers and summary.json in {output_dir}")
