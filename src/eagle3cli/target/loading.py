"""Loading a target causal LM, and the dtype it runs fastest in on the machine at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from eagle3cli.errors import Eagle3Error


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU (``local_rank``) when CUDA is available, else the CPU;
    ``cuda``: this process's GPU; ``cuda:N``: that one; ``cpu``."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Eagle3Error(f"--device {choice} was asked for but CUDA is not available", hint="use --device cpu or auto")
    if ":" in choice:
        return torch.device(choice)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a GPU, float32 on a CPU; else the named dtype."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, choice)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (any CUDA GPU torch runs on; a CPU with
    AVX512-BF16 or AMX, where bf16 matrix products are ~2x faster than float32). oneDNN's own
    "bf16 supported" is true on any AVX-512 CPU, where it emulates bf16 2.8x slower than
    float32 (benchmarks/RESULTS.md, "Dump and training dtype on a CPU without native bf16")."""
    if device.type == "cuda":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def load_pretrained(directory: Path, **options: Any) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(directory, **options)`` in eval mode, quietly
    (no "Loading weights" bar in the command's output), failing with one clear line."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from eagle3cli.target.hub import reading_weights

    progress_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with reading_weights(directory, "target"):
            model = AutoModelForCausalLM.from_pretrained(directory, **options)
    except (OSError, ValueError) as error:
        raise Eagle3Error(
            f"could not load the target model from {directory}: {error}",
            hint="the folder needs config.json and the model's weights (*.safetensors)",
        ) from error
    finally:
        if progress_was_on:
            hf_logging.enable_progress_bar()
    return model.eval()


def load_target(
    directory: Path,
    *,
    dtype: torch.dtype,
    device: torch.device,
    trust_remote_code: bool = False,
    num_gpus: int = 1,
    max_gpu_memory: str | None = None,
) -> nn.Module:
    """The target causal LM in ``dtype`` on ``device``, in eval mode; ``num_gpus > 1`` on CUDA
    spreads it over the visible GPUs (``device_map="auto"``, at most ``max_gpu_memory`` each)."""
    if num_gpus == 1 or device.type != "cuda":
        return load_pretrained(directory, dtype=dtype, device_map=str(device), trust_remote_code=trust_remote_code)
    max_memory = None if not max_gpu_memory else {index: max_gpu_memory for index in range(torch.cuda.device_count())}
    return load_pretrained(directory, dtype=dtype, device_map="auto", max_memory=max_memory, trust_remote_code=trust_remote_code)
