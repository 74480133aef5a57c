"""accelerate for training: the Accelerator (DDP by default, FSDP2 on request, gloo on CPU),
the learning-rate schedule, and the reset that lets one process run several trainings."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eagle3cli.config import TrainHyperParameters
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.loading import native_bf16
from eagle3cli.training.reporting import tracker_name


def trained_precision(precision: str) -> str:
    """``bf16`` or ``fp32``: ``auto`` is bf16 where bf16 is native (a GPU; a CPU with
    AVX512-BF16/AMX). On a CPU without it bf16 is emulated and a SmolLM2 draft trains ~15 %
    slower than in float32 (benchmarks/RESULTS.md)."""
    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() or native_bf16(torch.device("cpu")) else "fp32"


def bf16_training(config: TrainHyperParameters) -> bool:
    """Whether the run computes in bf16 (``--precision``, ``auto`` resolved on this machine)."""
    return trained_precision(config.precision) == "bf16"


def make_accelerator(config: TrainHyperParameters, output_dir: Path) -> Any:
    """The run's Accelerator; with ``fsdp``, FSDP2 (``fully_shard``) on GPUs and on CPU processes alike."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DistributedDataParallelKwargs,
        DistributedType,
        FullyShardedDataParallelPlugin,
        ProjectConfiguration,
    )

    fsdp_plugin = None
    if config.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        # float32 parameters, gradients and reductions: bf16 comes from autocast in the module's
        # forward, as under DDP (accelerate's own bf16 policy would also cast the forward's
        # float inputs — target probabilities, loss normalisers — to bf16)
        fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2, mixed_precision_policy=MixedPrecisionPolicy())
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # without it accelerate ignores torchrun's ranks on CPU (no gloo)
        mixed_precision="bf16" if bf16_training(config) else "no",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs")),
        log_with=tracker_name(config.report_to),
        # d2t/t2d and the frozen embedding never change: no per-step buffer broadcast
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        fsdp_plugin=fsdp_plugin,
        step_scheduler_with_optimizer=False,
    )
    if fsdp_plugin is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        shard_cpu_processes(accelerator, fsdp_plugin)
    if config.fsdp and accelerator.distributed_type != DistributedType.FSDP:
        raise Eagle3Error(
            f"--fsdp shards the draft across processes; this run is {accelerator.distributed_type.value} "
            f"with {accelerator.num_processes} process",
            hint="launch several processes (torchrun --nproc-per-node N, accelerate launch), or drop --fsdp",
        )
    return accelerator


# PartialState's distributed type before shard_cpu_processes changed it (restored by the reset)
_cpu_type_before_fsdp: list[Any] = []


def shard_cpu_processes(accelerator: Any, fsdp_plugin: Any) -> None:
    """Turn on FSDP2 for CPU processes (gloo). torch's ``fully_shard`` runs there, but accelerate
    switches to FSDP only for accelerator devices; this is the switch it makes for them
    (``AcceleratorState.__init__``), so prepare, clipping, ``get_state_dict`` and
    ``save_state``/``load_state`` take their FSDP2 paths, exactly as on GPUs."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    _cpu_type_before_fsdp.append(PartialState._shared_state["distributed_type"])
    accelerator.state.fsdp_plugin = fsdp_plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide settings (precision, plugins) so a later run in the same
    process may choose others; the process group itself is kept."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    os.environ.pop("ACCELERATE_USE_FSDP", None)  # set by an FSDP plugin; a later run would inherit FSDP
    if _cpu_type_before_fsdp:
        PartialState._shared_state["distributed_type"] = _cpu_type_before_fsdp.pop()


def exit_rank() -> None:
    """End a torchrun rank whose run succeeded (accelerate has destroyed the process group) with
    exit status 0 and without the interpreter's teardown.

    After the last collective a gloo worker thread still frees that work's tensors, which needs
    the GIL; once the interpreter is finalising, Python ends such a thread with ``pthread_exit``
    inside a ``noexcept`` destructor and the rank dies of ``std::terminate`` (SIGABRT) after a
    finished run — 3 of 100 looped two-process FSDP runs on CPU (core dump: ``~AsyncBarrierWork``
    → ``~AsyncAllgatherCoalescedWork`` → ``gil_scoped_acquire`` → ``PyThread_exit_thread``).
    Outputs are already closed and renamed by then; only the streams need flushing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_scheduler

    schedule = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(schedule, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def prepare(accelerator: Any, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    """Wrap for DDP/FSDP; the scheduler is stepped by hand (accelerate would step it once per process)."""
    with warnings.catch_warnings():  # torch renamed DDP's broadcast_buffers; accelerate still passes it
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        return accelerator.prepare(module, optimizer)
