"""The one training step shared by online and offline training.

Both sources hand over the same :class:`TargetBatch`: token ids, the assistant loss mask, the
three captured target states ``aux_hidden`` and the target's final hidden state
``last_hidden``, whose product with the target's ``lm_head`` is the target distribution.

Alignment (as EAGLE-3 and SpecForge): draft position ``t`` at unroll step ``i`` gets token
``x[t + 1 + i]`` and rotary position ``t + i``, and learns the target's distribution of row
``t + 1 + i`` (the token after ``x[t + 1 + i]``). It is trained there when ``loss_mask[t + 1 + i]``
is set and the target's argmax of that row is in the draft vocabulary; positions past the
sequence end (or in padding, whose mask is 0) never count.

Loss per step: soft cross-entropy against the target softmax restricted to the draft vocab,
summed over trained positions and divided by their number (``normalizers``: the count over
all ranks, so a distributed batch has exactly the loss of the same batch on one process).
Total: ``Σ_i decay^i · loss_i``. Metric sums (see :mod:`eagle3cli.training.metrics`) are
returned for all-reduce.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.training.attention import TrainingTimeTestAttention
from eagle3cli.training.metrics import NUM_METRIC_ROWS, MetricRow

TARGET_LOGIT_CHUNK = 1024  # rows of full-vocabulary target logits materialised at once


@dataclass
class TargetBatch:
    """A padded batch with the target's view of it (right padding, mask 0 on padding)."""

    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] bool, False on padding
    loss_mask: torch.Tensor  # [B, T] bool
    aux_hidden: torch.Tensor  # [B, T, 3 * Ht]
    last_hidden: torch.Tensor  # [B, T, Ht]


@dataclass
class TargetHead:
    """The target's ``lm_head`` split by the draft vocabulary, once per run.

    Only the draft rows' logits feed the loss (softmax over the draft vocabulary); the other
    rows only decide whether the full-vocabulary argmax is a draft token. The split decides
    as the full-vocabulary argmax does (up to the last bit of rounding, which depends on how a
    matmul is blocked).
    """

    draft_rows: torch.Tensor  # [draft_vocab, Ht] the draft tokens' rows, ascending target id
    draft_ids: torch.Tensor  # [draft_vocab] their target ids
    other_rows: torch.Tensor  # [V - draft_vocab, Ht] every other row
    other_ids: torch.Tensor  # [V - draft_vocab] their target ids, ascending

    @classmethod
    def split(cls, lm_head: torch.Tensor, t2d: torch.Tensor) -> "TargetHead":
        draft_ids = t2d.nonzero().squeeze(-1)
        other_ids = (~t2d).nonzero().squeeze(-1)
        return cls(lm_head[draft_ids], draft_ids, lm_head[other_ids], other_ids)


@dataclass
class TargetRows:
    """The target's view of the rows under the loss mask, compacted: the softmax over the draft
    vocabulary and its argmax for the ``M`` loss-mask rows, and where each row went."""

    probs: torch.Tensor  # [M, draft_vocab] float32
    argmax: torch.Tensor  # [M] int64 (draft ids)
    trained: torch.Tensor  # [B, T] bool: loss mask and target argmax in the draft vocab
    row_index: torch.Tensor  # [B, T] int64: row of probs/argmax for a loss-mask position


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 → fp32 for softmax and losses; fp32/fp64 unchanged."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def first_max(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the largest logit and the target id of its first occurrence."""
    values, index = logits.max(-1)
    return values, ids[index]


@torch.no_grad()
def target_rows(last_hidden: torch.Tensor, loss_mask: torch.Tensor, head: TargetHead) -> TargetRows:
    """Target distribution of the loss-mask rows of ``last_hidden [B, T, Ht]``.

    Rows outside the loss mask are never trained, so they are not computed. The full
    argmax is in the draft vocabulary when the draft rows' maximum beats the other rows'
    (ties go to the lower target id, as ``argmax`` does). Logits are built
    ``TARGET_LOGIT_CHUNK`` rows at a time, so memory stays ``O(chunk · V)``.
    """
    mask = loss_mask.bool()
    hidden = last_hidden[mask]  # [M, Ht]
    probs, in_draft = [], []
    for chunk in hidden.split(TARGET_LOGIT_CHUNK):
        logits = at_least_fp32(chunk.to(head.draft_rows.dtype) @ head.draft_rows.T)  # [chunk, draft_vocab]
        draft_max, draft_id = first_max(logits, head.draft_ids)
        if head.other_ids.numel():
            other_max, other_id = first_max(at_least_fp32(chunk.to(head.other_rows.dtype) @ head.other_rows.T), head.other_ids)
            in_draft.append((draft_max > other_max) | ((draft_max == other_max) & (draft_id < other_id)))
        else:
            in_draft.append(torch.ones_like(draft_max, dtype=torch.bool))
        probs.append(logits.softmax(-1))
    probs_all = torch.cat(probs)  # split() yields one (empty) chunk even without loss-mask rows
    trained = torch.zeros_like(mask)
    trained[mask] = torch.cat(in_draft)
    row_index = (mask.flatten().cumsum(0) - 1).view_as(mask)
    return TargetRows(probs_all, probs_all.argmax(-1), trained, row_index)


def shift_left(tensor: torch.Tensor, shift: int, fill: float | int | bool = 0) -> torch.Tensor:
    """``out[:, t] = tensor[:, t + shift]``, ``fill`` past the end (dim 1 is the sequence)."""
    if shift == 0:
        return tensor
    padding = tensor.new_full((tensor.shape[0], min(shift, tensor.shape[1]), *tensor.shape[2:]), fill)
    return torch.cat([tensor[:, shift:], padding], dim=1)


def step_masks(trained: torch.Tensor, ttt_length: int) -> torch.Tensor:
    """``[ttt_length, B, T]`` bool: which draft positions each unroll step trains on."""
    return torch.stack([shift_left(trained, step + 1, False) for step in range(ttt_length)])


def num_trained_positions(trained: torch.Tensor, ttt_length: int) -> torch.Tensor:
    """``[ttt_length]`` float: trained positions per step (the loss normalizers before all-reduce)."""
    return step_masks(trained, ttt_length).sum(dim=(1, 2)).float()


def unroll(
    draft: Eagle3DraftModel, input_ids: torch.Tensor, aux_hidden: torch.Tensor, ttt_length: int
) -> Iterator[torch.Tensor]:
    """Yield the draft layer's output ``[B, T, H]`` of each of ``ttt_length`` unroll steps."""
    # 1. step 0 starts from the fused target states; each step feeds its output to the next
    hidden = draft.fuse(aux_hidden.to(draft.fc.weight.dtype))  # [B, T, H]
    attention = TrainingTimeTestAttention()
    positions = torch.arange(input_ids.shape[1], device=hidden.device).expand_as(input_ids)
    for step in range(ttt_length):
        # 2. token x[t+1+i] at rotary position t+i, attending to step-0 keys + this chain
        embeds = draft.embed(shift_left(input_ids, step + 1)).to(hidden.dtype)
        hidden = draft.layer(embeds, hidden, positions + step, attention)
        yield hidden


def layer_rms(aux_hidden: torch.Tensor, attention_mask: torch.Tensor, num_layers: int = 3) -> torch.Tensor:
    """``[3 * Ht]``: each capture layer's RMS over the batch's real tokens, repeated over its channels."""
    real = aux_hidden[attention_mask.bool()].float()  # [N, 3 * Ht]
    per_layer = real.unflatten(-1, (num_layers, -1)).pow(2).mean(dim=(0, 2)).sqrt()  # [3]
    return per_layer.repeat_interleave(aux_hidden.shape[-1] // num_layers).to(aux_hidden.dtype)


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, Σ decay^i loss_i (differentiable)
    metric_sums: torch.Tensor  # [NUM_METRIC_ROWS, ttt_length] float64, see MetricRow


def unrolled_step(
    draft: Eagle3DraftModel,
    batch: TargetBatch,
    rows: TargetRows,
    *,
    ttt_length: int,
    loss_decay: float,
    normalizers: torch.Tensor | None = None,
    hidden_noise_std: float = 0.0,
    hidden_noise_scale: str = "absolute",
) -> StepOutput:
    """Unroll ``ttt_length`` draft steps over the whole batch; return the loss and metric sums.

    ``normalizers [ttt_length]`` are the trained-position counts to divide by (default: this
    batch's own, from :func:`num_trained_positions`).
    """
    masks = step_masks(rows.trained, ttt_length)  # [k, B, T]
    if normalizers is None:
        normalizers = masks.sum(dim=(1, 2)).float()
    aux_hidden = batch.aux_hidden
    if hidden_noise_std > 0:
        std = hidden_noise_std
        if hidden_noise_scale == "layer-rms":
            std = std * layer_rms(aux_hidden, batch.attention_mask)
        aux_hidden = aux_hidden + torch.randn_like(aux_hidden) * std
    sums = torch.zeros(NUM_METRIC_ROWS, ttt_length, dtype=torch.float64, device=aux_hidden.device)
    chain_correct = torch.ones_like(rows.trained)  # [B, T] every earlier step right so far
    loss = torch.zeros((), dtype=rows.probs.dtype, device=aux_hidden.device)
    for step, hidden in enumerate(unroll(draft, batch.input_ids, aux_hidden, ttt_length)):
        # 3. positions t < T-1-i have a target row t+1+i; only trained positions reach the
        #    head (the others add nothing to the loss or the metrics)
        valid = max(batch.input_ids.shape[1] - 1 - step, 0)
        mask = masks[step][:, :valid]  # [B, T-1-i]
        target = rows.row_index[:, step + 1 :][mask]  # [N] rows of the target's probs
        log_probs = at_least_fp32(draft.logits(hidden[:, :valid][mask])).log_softmax(-1)  # [N, draft_vocab]
        step_loss_sum = -(rows.probs[target] * log_probs).sum()  # soft CE against row t+1+i
        loss = loss + loss_decay**step * step_loss_sum / normalizers[step].clamp(min=1)
        # 4. metrics: accuracy, and accuracy given all earlier steps right (chain)
        correct = mask.clone()
        correct[mask] = log_probs.argmax(-1) == rows.argmax[target]
        chain_eligible = chain_correct[:, :valid] & mask
        chain_correct = chain_eligible & correct
        sums[MetricRow.LOSS_SUM, step] = step_loss_sum.detach()
        sums[MetricRow.NUM_TRAINED, step] = mask.sum()
        sums[MetricRow.NUM_CORRECT, step] = correct.sum()
        sums[MetricRow.NUM_CHAIN_ELIGIBLE, step] = chain_eligible.sum()
        sums[MetricRow.NUM_CHAIN_CORRECT, step] = chain_correct.sum()
    return StepOutput(loss=loss, metric_sums=sums)
