"""``eagle3 serve``: start one vLLM OpenAI server per GPU group and hold them until Ctrl-C."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import stderr
from eagle3cli.config import ServeConfig
from eagle3cli.configfile import resolve_config

stdout = Console(highlight=False)


@config_options(ServeConfig, exclude=("extra_args",))
def serve(
    overrides: dict[str, Any],
    fallbacks: dict[str, Any],
    extra_args: Annotated[Optional[list[str]], typer.Argument(help="More vLLM arguments, after --.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Start vLLM OpenAI-compatible servers (one per GPU group, ports base-port + i) and hold them until Ctrl-C.

    Example: eagle3 serve --target-model Qwen/Qwen3-8B --num-servers 8 -- --gpu-memory-utilization 0.9
    """
    from eagle3cli.serving import launcher

    resolved = resolve_config(ServeConfig, config, overrides | {"extra_args": extra_args or None}, fallbacks)
    if resolved.host not in ("127.0.0.1", "localhost", "::1") and "--api-key" not in resolved.extra_args:
        stderr.print(f"[yellow]warning: --host {resolved.host} exposes the servers to the network without an API key; "
                     "pass vLLM's --api-key after -- to require one[/yellow]")

    def on_ready(endpoints: list[str]) -> None:
        for endpoint in endpoints:
            stdout.print(endpoint)
        stderr.print(f"[green]{len(endpoints)} server(s) ready[/green]; sample with: eagle3 sample --base-port "
                     f"{resolved.base_port} --num-servers {len(endpoints)} ...   (Ctrl-C stops them)")

    launcher.serve(resolved, on_ready=on_ready, on_status=lambda message: stderr.print(message))
