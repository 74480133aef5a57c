"""The target forward of a dump: load the target, run token-budget batches, keep real tokens.

Batches are right-padded with an attention mask; with causal attention a real token never
sees padding, so a sample's states do not depend on what it was batched with (up to float
rounding of different matrix shapes). Only the real tokens are copied to the host, on CUDA
asynchronously (pinned memory, a side stream), so the copy overlaps the next forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from eagle3cli.data.tokenize import TokenizedSample
from eagle3cli.dump.plan import token_batches
from eagle3cli.dump.shard_file import FP8, NUM_AUX_STATES, HiddenSample, quantize
from eagle3cli.target.capture import capture_hidden_states
from eagle3cli.target.loading import native_bf16

# Default forward budgets (benchmarks/RESULTS.md, "dump-hidden on a CPU"): on a 2-core CPU a
# bf16 SmolLM2 dump ran 401-443 tok/s at 16384 tokens per batch and 1,011-1,020 at 2048.
DEFAULT_BATCH_TOKENS = {"cuda": 16384, "cpu": 2048}


def compute_dtype(dump_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the target runs in for a dump stored in ``dump_dtype`` on ``device``: the stored
    dtype (bfloat16 for float8), except that a half-precision dump on a CPU without native bf16
    computes in float32 and rounds when it stores (bf16 matrix products are emulated there: a
    SmolLM2 dump ran 219-232 tok/s in bf16 and 622-645 in float32, benchmarks/RESULTS.md)."""
    wanted = torch.bfloat16 if dump_dtype == FP8 else dump_dtype
    if wanted in (torch.bfloat16, torch.float16) and device.type == "cpu" and not native_bf16(device):
        return torch.float32
    return wanted


def batch_token_budget(batch_tokens: int | None, device: torch.device) -> int:
    """``batch_tokens``, or the default for ``device``'s kind."""
    return batch_tokens if batch_tokens is not None else DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cuda"])


class HostTransfer:
    """Copies states to the host. On CUDA the copies go to pinned memory on a side stream, so
    they overlap the next batch's forward; :meth:`fence` says when they have landed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host copy of ``tensor`` (complete only once the fence taken after it has passed)."""
        if self.stream is None:
            return tensor.to("cpu")
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            tensor.record_stream(self.stream)  # keep the device memory until the copy is done
        return host

    def fence(self) -> Callable[[], None]:
        """A function that waits for every copy started so far."""
        if self.stream is None:
            return lambda: None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event.synchronize


def forward_batch(
    model: nn.Module,
    samples: Sequence[TokenizedSample],
    *,
    aux_layer_ids: Sequence[int],
    dtype: torch.dtype,
    transfer: HostTransfer,
) -> list[HiddenSample]:
    """One padded forward over ``samples``; each sample's states, copied to the host in ``dtype``."""
    device = transfer.device
    lengths = [len(sample.input_ids) for sample in samples]
    input_ids = pad_sequence([torch.tensor(sample.input_ids) for sample in samples], batch_first=True)  # [batch, seq], right-padded
    attention_mask = pad_sequence([torch.ones(length, dtype=torch.int64) for length in lengths], batch_first=True)
    real = attention_mask.flatten().nonzero().squeeze(1).to(device)  # [num_real_tokens]: flat positions of the real tokens
    with torch.inference_mode():
        states = capture_hidden_states(
            model, input_ids.to(device), aux_layer_ids=aux_layer_ids, attention_mask=attention_mask.to(device)
        )
        aux_hidden = states.aux_hidden.flatten(0, 1).index_select(0, real)  # [real, 3 * H]
        last_hidden = states.last_hidden.flatten(0, 1).index_select(0, real)  # [real, H]
        if dtype == FP8:  # quantised on the device: half the bytes cross to the host
            aux_hidden, aux_scales = quantize(aux_hidden, NUM_AUX_STATES)
            last_hidden, last_scales = quantize(last_hidden, 1)
            aux_scales, last_scales = transfer.copy(aux_scales).split(lengths), transfer.copy(last_scales).split(lengths)
        else:
            aux_scales = last_scales = [None] * len(samples)
        aux_hidden, last_hidden = transfer.copy(aux_hidden.to(dtype)), transfer.copy(last_hidden.to(dtype))
    states_per_sample = zip(samples, aux_hidden.split(lengths), last_hidden.split(lengths), aux_scales, last_scales)
    return [HiddenSample.of(*parts) for parts in states_per_sample]


def compute_samples(
    model: nn.Module,
    samples: Sequence[TokenizedSample],
    *,
    aux_layer_ids: Sequence[int],
    dtype: torch.dtype,
    batch_tokens: int,
    transfer: HostTransfer,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[HiddenSample]:
    """The states of ``samples`` in their order, computed in token-budget batches.

    The host tensors are complete once ``transfer.fence()`` taken afterwards has passed.
    ``on_batch(num_samples, num_tokens)`` is called after each batch.
    """
    results: list[HiddenSample | None] = [None] * len(samples)
    for batch in token_batches([len(sample.input_ids) for sample in samples], batch_tokens):
        computed = forward_batch(
            model, [samples[i] for i in batch], aux_layer_ids=aux_layer_ids, dtype=dtype, transfer=transfer
        )
        for position, sample in zip(batch, computed):
            results[position] = sample
        if on_batch is not None:
            on_batch(len(batch), sum(sample.num_tokens for sample in computed))
    return results  # type: ignore[return-value]  # every position is filled by exactly one batch
