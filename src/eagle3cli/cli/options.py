"""Options shared by several commands, declared once (the ``hf`` CLI's way)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML, TOML or JSON file with the command's settings; flags override it.", dir_okay=False),
]
DataOption = Annotated[
    Optional[str],
    typer.Option("--data", help="Dataset: .jsonl/.json/.parquet file, directory of shards, glob, or hub name org/name[:split]."),
]
FormatOption = Annotated[
    Optional[str], typer.Option("--format", help="Record format: auto|sharegpt|ultrachat|openai.")
]
ChatTemplateOption = Annotated[
    Optional[str],
    typer.Option("--chat-template", help="qwen3|hunyuan|auto (auto = the tokenizer's own chat_template)."),
]
MaxLengthOption = Annotated[Optional[int], typer.Option("--max-length", help="Token budget per sample.")]
EnableThinkingOption = Annotated[
    Optional[bool],
    typer.Option("--enable-thinking/--no-enable-thinking", help="Qwen3 thinking mode (default off)."),
]
SystemPromptOption = Annotated[
    Optional[str], typer.Option("--system-prompt", help="System prompt to add; none is injected otherwise.")
]
OnBadRecordOption = Annotated[
    Optional[str], typer.Option("--on-bad-record", help="error (default) or skip malformed records, with a count.")
]
NumSamplesOption = Annotated[Optional[int], typer.Option("--num-samples", help="Use only the first N valid records.")]
TrustRemoteCodeOption = Annotated[
    Optional[bool], typer.Option("--trust-remote-code", help="Allow code from the model's repository to run.")
]
HostOption = Annotated[Optional[str], typer.Option("--host", help="Server address (default 127.0.0.1).")]
BasePortOption = Annotated[
    Optional[int], typer.Option("--base-port", help="Port of server 0; server i is on base-port + i (default 6000).")
]
NumServersOption = Annotated[Optional[int], typer.Option("--num-servers", help="Number of vLLM servers.")]
