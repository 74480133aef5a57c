"""The arithmetic of a Llama-style layer in fewer calls, for eagle3's own forwards on a CPU
(:mod:`~eagle3cli.decoding.fused_target`, :mod:`~eagle3cli.decoding.fused_draft`): each
function computes what transformers computes, operation for operation, so the results are the
same bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """transformers' Llama-family RMSNorm: statistics in float32, cast back, then the weight
    (for float32 tensors ``F.rms_norm``: the same operations, fewer dispatches)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers applies it (``rotate_half``; ``x [B, T, heads, head_dim]``, ``cos``/``sin`` ``[B, T, 1, head_dim]``)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def rotated_heads(
    heads: torch.Tensor, num_query: int, num_qk: int, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One stacked q/k/v product as ``heads [B, T, q + k + v heads, D]`` → query, key and value
    ``[B, heads, T, D]``, RoPE over the query and key heads in one pass (a layer without q/k norms)."""
    rotated = rotate(heads[:, :, :num_qk], cos, sin)
    return rotated[:, :, :num_query].transpose(1, 2), rotated[:, :, num_query:].transpose(1, 2), heads[:, :, num_qk:].transpose(1, 2)


def stacked(linears: Sequence[nn.Linear]) -> nn.Linear:
    """One ``nn.Linear`` whose output is the outputs of ``linears`` side by side."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    biases = [linear.bias for linear in linears]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b.detach() if b is not None else weight.new_zeros(linear.out_features) for b, linear in zip(biases, linears)])
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused
