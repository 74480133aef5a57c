"""``eagle3 train online|offline``: train an EAGLE-3 draft (one shared training step).

Both commands take the same hyper-parameter flags (declared once, in :data:`HYPERPARAMETER_OPTIONS`,
and added to each command's signature by :func:`with_hyperparameters`); each builds one
pydantic config and calls one library function. Under ``accelerate launch`` / ``torchrun``
only process 0 prints.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.errors import report_errors
from eagle3cli.cli.options import (
    ChatTemplateOption,
    ConfigOption,
    EnableThinkingOption,
    FormatOption,
    MaxLengthOption,
    NumSamplesOption,
    OnBadRecordOption,
    SystemPromptOption,
    TrustRemoteCodeOption,
)
from eagle3cli.cli.progress import progress_bar, stderr

if TYPE_CHECKING:
    from eagle3cli.training.trainer import TrainSummary

stdout = Console(highlight=False)
train_app = typer.Typer(help="Train an EAGLE-3 draft: online (target in the loop) or offline (hidden-state dumps).", no_args_is_help=True)

TargetModelOption = Annotated[Optional[str], typer.Option("--target-model", help="Target model directory or hub id.")]
OutputDirOption = Annotated[Optional[Path], typer.Option("--output-dir", help="Output folder; rerunning in it resumes.")]
DraftConfigOption = Annotated[
    Optional[Path], typer.Option("--draft-config", help="Draft config file (default: derived from the target / the dump's).", dir_okay=False)
]


def _option(annotation: Any, *flags: str, help: str) -> inspect.Parameter:  # noqa: A002
    name = flags[0].removeprefix("--").split("/")[0].replace("-", "_")
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[annotation], typer.Option(*flags, help=help)]
    )


HYPERPARAMETER_OPTIONS = [
    _option(int, "--num-epochs", help="Passes over the training data (default 1)."),
    _option(float, "--learning-rate", help="Peak AdamW learning rate (default 1e-4)."),
    _option(float, "--warmup-ratio", help="Fraction of steps warming the learning rate up (default 0)."),
    _option(str, "--lr-scheduler", help="constant|cosine|linear (default cosine)."),
    _option(int, "--per-device-batch-size", help="Samples per process per micro-batch (default 1)."),
    _option(int, "--gradient-accumulation-steps", help="Micro-batches per optimizer step (default 1)."),
    _option(float, "--max-grad-norm", help="Gradient clipping norm (default 0.5)."),
    _option(float, "--weight-decay", help="AdamW weight decay (default 0)."),
    _option(str, "--precision", help="bf16 (default) or fp32."),
    _option(int, "--ttt-length", help="Training-time-test unroll length (default 7)."),
    _option(float, "--loss-decay", help="Weight decay^i of unroll step i's loss (default 0.8)."),
    _option(int, "--draft-vocab-size", help="Draft vocabulary size (default: the draft config's)."),
    _option(int, "--seed", help="Seed of initialisation, data order and noise (default 0)."),
    _option(int, "--log-steps", help="Optimizer steps between log lines (default 10)."),
    _option(int, "--eval-steps", help="Optimizer steps between evaluations (default: at the end only)."),
    _option(int, "--save-steps", help="Optimizer steps between checkpoints (default: at the end only)."),
    _option(int, "--save-total-limit", help="Step checkpoints kept (default 2)."),
    _option(str, "--report-to", help="none (default), tensorboard or wandb."),
    _option(str, "--run-name", help="Tracker run name (default: the output folder's name)."),
    _option(float, "--hidden-noise-std", help="Gaussian noise std on the target states while training (default 0)."),
    _option(bool, "--fsdp/--no-fsdp", help="Shard the draft with FSDP instead of DDP (default off)."),
    _option(bool, "--resume/--no-resume", help="Resume from the latest checkpoint in --output-dir (default on)."),
    _option(Path, "--init-draft", help="Draft checkpoint to fine-tune from (its vocabulary map is reused)."),
    _option(int, "--max-steps", help="Stop after this many optimizer steps."),
]


def with_hyperparameters(command: Callable[..., None]) -> Callable[..., None]:
    """Add the hyper-parameter options to ``command``'s signature; it receives them as one
    ``hyperparameters`` dict."""
    names = [parameter.name for parameter in HYPERPARAMETER_OPTIONS]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        hyperparameters = {name: kwargs.pop(name) for name in names}
        if hyperparameters["init_draft"] is not None:
            hyperparameters["init_draft"] = str(hyperparameters["init_draft"])
        command(**kwargs, hyperparameters=hyperparameters)

    hints = typing.get_type_hints(command, include_extras=True)  # this module's string annotations, resolved
    own = [
        parameter.replace(annotation=hints[name])
        for name, parameter in inspect.signature(command).parameters.items()
        if name != "hyperparameters"
    ]
    wrapper.__signature__ = inspect.Signature([*own, *HYPERPARAMETER_OPTIONS])  # type: ignore[attr-defined]
    del wrapper.__wrapped__  # typer must read the new signature, not the original's
    return wrapper


def _path(value: Path | None) -> str | None:
    return None if value is None else str(value)


@train_app.command("online")
@report_errors
@with_hyperparameters
def online(
    target_model: TargetModelOption = None,
    train_data: Annotated[Optional[str], typer.Option("--train-data", help="Training conversations (file, folder, glob or hub dataset).")] = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="Evaluation conversations; eval sim_accept_len picks best/.")] = None,
    output_dir: OutputDirOption = None,
    draft_config: DraftConfigOption = None,
    data_format: FormatOption = None,
    chat_template: ChatTemplateOption = None,
    max_length: MaxLengthOption = None,
    enable_thinking: EnableThinkingOption = None,
    system_prompt: SystemPromptOption = None,
    num_samples: NumSamplesOption = None,
    on_bad_record: OnBadRecordOption = None,
    trust_remote_code: TrustRemoteCodeOption = None,
    config: ConfigOption = None,
    hyperparameters: dict[str, Any] | None = None,
) -> None:
    """Train a draft with the target in the loop (hooks on the draft config's capture layers).

    Example: eagle3 train online --target-model Qwen/Qwen3-8B --train-data regen/shards --chat-template qwen3 --output-dir drafts/qwen3
    Several GPUs: accelerate launch -m eagle3cli train online ... (or torchrun --nproc-per-node 8 -m eagle3cli ...)
    """
    from eagle3cli.config import OnlineTrainConfig
    from eagle3cli.configfile import resolve_config
    from eagle3cli.training.online import train_online

    resolved = resolve_config(
        OnlineTrainConfig,
        config,
        dict(
            target_model=target_model, train_data=train_data, eval_data=eval_data, output_dir=_path(output_dir),
            draft_config=_path(draft_config), format=data_format, chat_template=chat_template, max_length=max_length,
            enable_thinking=enable_thinking, system_prompt=system_prompt, num_samples=num_samples,
            on_bad_record=on_bad_record, trust_remote_code=trust_remote_code, **(hyperparameters or {}),
        ),
    )
    print_summary(run_with_progress(lambda on_step: train_online(resolved, on_step=on_step)))


@train_app.command("offline")
@report_errors
@with_hyperparameters
def offline(
    target_model: TargetModelOption = None,
    train_hidden: Annotated[Optional[Path], typer.Option("--train-hidden", help="Hidden-state dump folder to train on (eagle3 dump-hidden).")] = None,
    eval_hidden: Annotated[Optional[Path], typer.Option("--eval-hidden", help="Hidden-state dump folder to evaluate on; eval sim_accept_len picks best/.")] = None,
    train_data: Annotated[Optional[str], typer.Option("--train-data", help="The conversations the dump was made from (checked against its manifest).")] = None,
    output_dir: OutputDirOption = None,
    draft_config: DraftConfigOption = None,
    chat_template: ChatTemplateOption = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Crop samples to this many tokens (default: as dumped).")] = None,
    lm_head_key: Annotated[Optional[str], typer.Option("--lm-head-key", help="Safetensors key of the target's lm_head (default lm_head.weight, or the embedding when tied).")] = None,
    embed_key: Annotated[Optional[str], typer.Option("--embed-key", help="Safetensors key of the target's embedding (default model.embed_tokens.weight).")] = None,
    config: ConfigOption = None,
    hyperparameters: dict[str, Any] | None = None,
) -> None:
    """Train a draft on hidden-state dumps; the target distribution comes from its lm_head alone.

    Example: eagle3 train offline --target-model Qwen/Qwen3-8B --train-hidden dumps/qwen3 --output-dir drafts/qwen3
    """
    from eagle3cli.config import OfflineTrainConfig
    from eagle3cli.configfile import resolve_config
    from eagle3cli.training.offline import train_offline

    resolved = resolve_config(
        OfflineTrainConfig,
        config,
        dict(
            target_model=target_model, train_hidden=_path(train_hidden), eval_hidden=_path(eval_hidden),
            train_data=train_data, output_dir=_path(output_dir), draft_config=_path(draft_config),
            chat_template=chat_template, max_length=max_length, lm_head_key=lm_head_key, embed_key=embed_key,
            **(hyperparameters or {}),
        ),
    )
    print_summary(run_with_progress(lambda on_step: train_offline(resolved, on_step=on_step)))


class ConsoleHandler(logging.Handler):
    """Log records as single unwrapped lines on stderr, drawn above the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(escape(record.getMessage()), soft_wrap=True)


def run_with_progress(run: Callable[[Callable[[int, int], None]], TrainSummary]) -> TrainSummary:
    """Run training with a progress bar and the log lines on stderr (process 0 only logs)."""
    handler = ConsoleHandler()
    package_logger = logging.getLogger("eagle3cli")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        with progress_bar(SpinnerColumn(), TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"), TimeRemainingColumn()) as progress:
            task = progress.add_task("training", total=None)
            return run(lambda step, total: progress.update(task, completed=step, total=total))
    finally:
        package_logger.removeHandler(handler)


def print_summary(summary: TrainSummary) -> None:
    """Where the drafts are and the last metrics, on stdout (process 0)."""
    if not summary.is_main_process:
        return
    table = Table(title=f"train → {summary.output_dir}", show_header=False)
    table.add_row("steps", f"{summary.global_step}/{summary.total_steps}")
    table.add_row("final draft", str(summary.final_dir))
    best = "none (no eval data)" if summary.best_dir is None else f"{summary.best_dir} (eval sim_τ {summary.best_sim_accept_len:.3f})"
    table.add_row("best draft", best)
    for kind, metrics in (("train", summary.train_metrics), ("eval", summary.eval_metrics)):
        if metrics:
            table.add_row(f"{kind} loss / acc@0 / sim_τ", f"{metrics['loss']:.4f} / {metrics['acc@0']:.3f} / {metrics['sim_accept_len']:.3f}")
    stdout.print(table)
