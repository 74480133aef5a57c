"""``eagle3 serve``: start one vLLM OpenAI server per GPU group and hold them until Ctrl-C."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from eagle3cli.cli.options import BasePortOption, ConfigOption, HostOption, NumServersOption
from eagle3cli.cli.progress import stderr
from eagle3cli.config import ServeConfig
from eagle3cli.configfile import resolve_config
from eagle3cli.errors import Eagle3Error

stdout = Console(highlight=False)


def serve(
    target_model: Annotated[Optional[str], typer.Option("--target-model", help="Model directory or hub id to serve.")] = None,
    num_servers: NumServersOption = None,
    base_port: BasePortOption = None,
    gpus_per_server: Annotated[Optional[int], typer.Option("--gpus-per-server", help="GPUs per server (default 1; tensor parallel above 1).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto|float32|float16|bfloat16 (float32 on CPU).")] = None,
    max_model_len: Annotated[Optional[int], typer.Option("--max-model-len", help="Context length (default: the model's).")] = None,
    host: HostOption = None,
    log_dir: Annotated[Optional[Path], typer.Option("--log-dir", help="Folder of the per-server logs (default vllm-logs).")] = None,
    vllm_python: Annotated[Optional[str], typer.Option("--vllm-python", help="Python with vLLM installed (default $EAGLE3_VLLM_PYTHON, else this one).")] = None,
    speculative_config: Annotated[Optional[str], typer.Option("--speculative-config", help="JSON passed to vLLM, e.g. a trained EAGLE-3 draft.")] = None,
    ready_timeout: Annotated[Optional[float], typer.Option("--ready-timeout", help="Seconds to wait for the servers (default 1800).")] = None,
    extra_args: Annotated[Optional[list[str]], typer.Argument(help="More vLLM arguments, after --.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Start vLLM OpenAI-compatible servers (one per GPU group, ports base-port + i) and hold them until Ctrl-C.

    Example: eagle3 serve --target-model Qwen/Qwen3-8B --num-servers 8 -- --gpu-memory-utilization 0.9
    """
    from eagle3cli.serving import launcher

    resolved = resolve_config(
        ServeConfig,
        config,
        dict(
            target_model=target_model, num_servers=num_servers, base_port=base_port, gpus_per_server=gpus_per_server,
            dtype=dtype, max_model_len=max_model_len, host=host, log_dir=None if log_dir is None else str(log_dir),
            vllm_python=vllm_python, speculative_config=parse_json_object(speculative_config),
            ready_timeout_s=ready_timeout, extra_args=extra_args or None,
        ),
    )

    def on_ready(endpoints: list[str]) -> None:
        for endpoint in endpoints:
            stdout.print(endpoint)
        stderr.print(f"[green]{len(endpoints)} server(s) ready[/green]; sample with: eagle3 sample --base-port "
                     f"{resolved.base_port} --num-servers {len(endpoints)} ...   (Ctrl-C stops them)")

    launcher.serve(resolved, on_ready=on_ready, on_status=lambda message: stderr.print(message))


def parse_json_object(text: str | None) -> dict[str, Any] | None:
    """``--speculative-config`` text as a JSON object."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise Eagle3Error(f"--speculative-config is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise Eagle3Error("--speculative-config must be a JSON object", hint='e.g. {"method": "eagle3", "model": "DRAFT"}')
    return value
