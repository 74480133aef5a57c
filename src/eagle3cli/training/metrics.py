"""Training metrics from summable counts, so they all-reduce exactly across ranks and batches.

Per unroll step ``i`` the step returns a column of :class:`MetricRow` sums. From them:

- ``loss_i``   = loss sum / trained positions; ``loss`` = ``Σ_i decay^i · loss_i``
- ``acc_i``    = draft argmax equals target argmax, over trained positions
- ``cond_acc_i`` = the same among positions whose steps ``0 .. i-1`` were all right (and
  trained): the chance the ``i``-th drafted token is accepted once the earlier ones were
- ``sim_accept_len`` = ``1 + Σ_i Π_{j≤i} cond_acc_j``: the expected tokens per target forward
  of chain drafting with ``ttt_length`` draft tokens (the bonus token counts 1).
"""

from __future__ import annotations

from enum import IntEnum

import torch


class MetricRow(IntEnum):
    LOSS_SUM = 0
    NUM_TRAINED = 1
    NUM_CORRECT = 2
    NUM_CHAIN_ELIGIBLE = 3  # trained, and every earlier step right
    NUM_CHAIN_CORRECT = 4  # ... and this step right too


NUM_METRIC_ROWS = len(MetricRow)


def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Elementwise ``numerator / denominator``, 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator))


def summarize(metric_sums: torch.Tensor, loss_decay: float) -> dict[str, float]:
    """Named metrics from ``[NUM_METRIC_ROWS, ttt_length]`` sums (already all-reduced)."""
    sums = metric_sums.detach().double().cpu()
    step_loss = ratio(sums[MetricRow.LOSS_SUM], sums[MetricRow.NUM_TRAINED])
    accuracy = ratio(sums[MetricRow.NUM_CORRECT], sums[MetricRow.NUM_TRAINED])
    cond_accuracy = ratio(sums[MetricRow.NUM_CHAIN_CORRECT], sums[MetricRow.NUM_CHAIN_ELIGIBLE])
    decay = loss_decay ** torch.arange(sums.shape[1], dtype=torch.float64)
    metrics = {
        "loss": float((decay * step_loss).sum()),
        "sim_accept_len": float(1 + cond_accuracy.cumprod(0).sum()),
        "num_trained_tokens": float(sums[MetricRow.NUM_TRAINED, 0]),
    }
    for step in range(sums.shape[1]):
        metrics[f"loss@{step}"] = float(step_loss[step])
        metrics[f"acc@{step}"] = float(accuracy[step])
        metrics[f"cond_acc@{step}"] = float(cond_accuracy[step])
    return metrics
