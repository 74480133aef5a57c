"""``eagle3 train online|offline``: train an EAGLE-3 draft (one shared training step).

Both commands' options come from their config models (the hyper-parameters are the shared
:class:`~eagle3cli.config.TrainHyperParameters` fields); each builds one pydantic config and
calls one library function. Under ``accelerate launch`` / ``torchrun`` only process 0 prints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.errors import report_errors
from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import progress_bar, stderr
from eagle3cli.config import OfflineTrainConfig, OnlineTrainConfig, TrainHyperParameters
from eagle3cli.configfile import resolve_config

if TYPE_CHECKING:
    from eagle3cli.training.trainer import TrainSummary

stdout = Console(highlight=False)
train_app = typer.Typer(help="Train an EAGLE-3 draft: online (target in the loop) or offline (hidden-state dumps).", no_args_is_help=True)

OPTIMIZATION = ("num_epochs", "max_steps", "learning_rate", "warmup_ratio", "lr_scheduler", "per_device_batch_size",
                "gradient_accumulation_steps", "max_grad_norm", "weight_decay", "precision", "seed", "fsdp")
DRAFT = ("draft_config", "draft_vocab_size", "init_draft", "init_head_from_target", "fc_norm", "ttt_length", "loss_decay", "hidden_noise_std", "hidden_noise_scale")
RUN = ("output_dir", "resume", "log_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "run_name")
ONLINE_PANELS = {
    "Target and data": ("target_model", "train_data", "eval_data", "format", "num_samples", "on_bad_record",
                        "chat_template", "enable_thinking", "system_prompt", "max_length", "trust_remote_code"),
    "Draft": DRAFT, "Optimization": OPTIMIZATION, "Run and outputs": RUN,
}
OFFLINE_PANELS = {
    "Target and data": ("target_model", "train_hidden", "eval_hidden", "num_samples", "train_data", "chat_template",
                        "max_length", "lm_head_key", "embed_key", "verify_shards", "stream"),
    "Draft": DRAFT, "Optimization": OPTIMIZATION, "Run and outputs": RUN,
}
assert set(TrainHyperParameters.model_fields) <= set(OPTIMIZATION + DRAFT + RUN), "a hyper-parameter without a help panel"


@train_app.command("online")
@report_errors
@config_options(OnlineTrainConfig, panels=ONLINE_PANELS)
def online(overrides: dict[str, Any], fallbacks: dict[str, Any], config: ConfigOption = None) -> None:
    """Train a draft with the target in the loop (hooks on the draft config's capture layers).

    Example: eagle3 train online --target-model Qwen/Qwen3-8B --train-data regen/shards --chat-template qwen3 --output-dir drafts/qwen3
    Several GPUs: accelerate launch -m eagle3cli train online ... (or torchrun --nproc-per-node 8 -m eagle3cli ...)
    """
    from eagle3cli.training.online import train_online

    resolved = resolve_config(OnlineTrainConfig, config, overrides, fallbacks)
    print_summary(run_with_progress(lambda on_step: train_online(resolved, on_step=on_step)))
    finish_run()


@train_app.command("offline")
@report_errors
@config_options(OfflineTrainConfig, panels=OFFLINE_PANELS)
def offline(overrides: dict[str, Any], fallbacks: dict[str, Any], config: ConfigOption = None) -> None:
    """Train a draft on hidden-state dumps; the target distribution comes from its lm_head alone.

    Example: eagle3 train offline --target-model Qwen/Qwen3-8B --train-hidden dumps/qwen3 --output-dir drafts/qwen3
    """
    from eagle3cli.training.offline import train_offline

    resolved = resolve_config(OfflineTrainConfig, config, overrides, fallbacks)
    print_summary(run_with_progress(lambda on_step: train_offline(resolved, on_step=on_step)))
    finish_run()


def finish_run() -> None:
    """A rank of a several-process run exits at once (``exit_rank``); a single process returns."""
    from eagle3cli.training.accelerate_setup import exit_rank

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_rank()


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
