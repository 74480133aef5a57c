"""accelerate for training: the Accelerator (DDP by default, FSDP on request, gloo on CPU),
the learning-rate schedule, and the reset that lets one process run several trainings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eagle3cli.config import TrainHyperParameters
from eagle3cli.errors import Eagle3Error
from eagle3cli.training.reporting import tracker_name


def make_accelerator(config: TrainHyperParameters, output_dir: Path) -> Any:
    """The run's Accelerator; refuses ``fsdp`` where accelerate would silently not shard."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DistributedDataParallelKwargs,
        DistributedType,
        FullyShardedDataParallelPlugin,
        ProjectConfiguration,
    )

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # without it accelerate ignores torchrun's ranks on CPU (no gloo)
        mixed_precision="bf16" if config.precision == "bf16" else "no",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs")),
        log_with=tracker_name(config.report_to),
        # d2t/t2d and the frozen embedding never change: no per-step buffer broadcast
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        fsdp_plugin=FullyShardedDataParallelPlugin(use_orig_params=True) if config.fsdp else None,
        step_scheduler_with_optimizer=False,
    )
    if config.fsdp and accelerator.distributed_type != DistributedType.FSDP:
        raise Eagle3Error(
            f"--fsdp needs several CUDA processes; this run is {accelerator.distributed_type.value} "
            f"with {accelerator.num_processes} process(es), where accelerate does not shard",
            hint="launch with accelerate launch / torchrun on GPUs, or drop --fsdp (DDP)",
        )
    return accelerator


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide settings (precision, plugins) so a later run in the same
    process may choose others; the process group itself is kept."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_scheduler

    schedule = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(schedule, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def prepare(accelerator: Any, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    """Wrap for DDP/FSDP; the scheduler is stepped by hand (accelerate would step it once per process)."""
    with warnings.catch_warnings():  # torch renamed DDP's broadcast_buffers; accelerate still passes it
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        return accelerator.prepare(module, optimizer)
