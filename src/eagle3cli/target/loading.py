"""Loading a target causal LM, and the dtype it runs fastest in on the machine at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from eagle3cli.errors import Eagle3Error


def resolve_device(choice: str, local_rank: int) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Eagle3Error("--device cuda was asked for but CUDA is not available", hint="use --device cpu or auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (any CUDA GPU torch runs on; a CPU with
    AVX512-BF16 or AMX, where bf16 matrix products are ~2x faster than float32)."""
    return device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load_pretrained(directory: Path, **options: Any) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(directory, **options)`` in eval mode, quietly
    (no "Loading weights" bar in the command's output), failing with one clear line."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from eagle3cli.hub import reading_weights

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
