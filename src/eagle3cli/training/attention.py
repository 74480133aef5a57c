"""Training-time-test attention: one fused SDPA call per unrolled step, memory linear in T.

Step ``i`` of the unroll (``i = 0 .. ttt_length - 1``) is the draft's ``i``-th speculative
step for every position ``t`` at once. Its query at ``t`` sees

- the step-0 keys at positions ``0 .. t`` (the real context, causal), and
- the keys of steps ``1 .. i`` at the **same** position ``t`` (the draft's own chain so far,
  itself included) — exactly what a chain of drafted tokens sees at decode time.

The extra keys differ per query, so they cannot be shared keys of one SDPA call, and a dense
``[T, (i + 1) T]`` mask (or fp32 score matrix) grows quadratically: an anchor implementation
ran out of memory at 16k tokens for that reason. Instead each extra key becomes a *slot*:

1. Head dimension ``D`` is padded to ``D + P`` (``P >= i``, a multiple of 8 for fused kernels).
2. ``i`` slot keys are prepended to the step-0 keys. Slot ``j``'s key is the unit vector on
   channel ``D + j``; the query carries the per-position score ``q_t · k_j[t]`` on that
   channel, so SDPA computes exactly the score the extra key would have for every ``t``.
3. Slot ``j``'s value is the unit vector on channel ``D + j`` (real values are zero there), so
   the output's channel ``D + j`` is the softmax weight ``w_j[t]`` of that slot, normalised
   together with all causal keys by the kernel itself.
4. ``i`` dummy queries are prepended too, so the mask is the plain square causal mask
   (``is_causal=True`` works on every backend): query ``t`` sees the ``i`` slots and the
   step-0 keys ``0 .. t``. The dummy rows are dropped.
5. Output = channels ``0 .. D`` + ``Σ_j w_j[t] · v_j[t]``.

Everything is differentiable through public ``scaled_dot_product_attention``: gradients
reach the slot scores (hence ``q`` and ``k_j``), the causal keys and the extra values.
Extra memory per step is ``O(T · (D + P))``; no ``[T, T]`` tensor is built.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SLOT_ALIGNMENT = 8  # fused kernels want head dims that are multiples of 8


class TrainingTimeTestAttention:
    """The ``attend`` callable of one unroll: call it once per step, in order.

    The first call (step 0) is causal attention and keeps its keys/values; each later call
    adds its own keys/values as same-position extra keys. Make a new one for every batch.
    """

    def __init__(self) -> None:
        self.causal_keys: torch.Tensor | None = None  # [B, kv_heads, T, D] of step 0
        self.causal_values: torch.Tensor | None = None
        self.extra_keys: list[torch.Tensor] = []  # steps 1..i, each [B, kv_heads, T, D]
        self.extra_values: list[torch.Tensor] = []

    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if self.causal_keys is None:
            self.causal_keys, self.causal_values = key, value
            return F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True)
        self.extra_keys.append(key)
        self.extra_values.append(value)
        return attention_with_extra_keys(
            query, self.causal_keys, self.causal_values, self.extra_keys, self.extra_values
        )


def repeat_kv(tensor: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, kv_heads, T, D]`` → ``[B, heads, T, D]`` (grouped-query heads share a kv head)."""
    return tensor.repeat_interleave(num_heads // tensor.shape[1], dim=1)


def attention_with_extra_keys(
    query: torch.Tensor,
    causal_keys: torch.Tensor,
    causal_values: torch.Tensor,
    extra_keys: list[torch.Tensor],
    extra_values: list[torch.Tensor],
) -> torch.Tensor:
    """Query ``t`` attends to ``causal_keys[0..t]`` and to ``extra_keys[j][t]`` for every ``j``.

    ``query [B, heads, T, D]``; keys/values ``[B, kv_heads, T, D]``. Returns ``[B, heads, T, D]``.
    """
    batch, num_heads, seq, head_dim = query.shape
    num_kv_heads = causal_keys.shape[1]
    num_slots = len(extra_keys)
    padded = head_dim + SLOT_ALIGNMENT * math.ceil(num_slots / SLOT_ALIGNMENT)
    # 1. per-position scores of the extra keys: [B, heads, T, slots] (the kernel applies the scale)
    slot_scores = torch.stack([(query * repeat_kv(k, num_heads)).sum(-1) for k in extra_keys], dim=-1)
    # 2. queries [B, heads, slots + T, D + P]: dummy rows first, slot scores on channels D..D+slots
    query_padded = F.pad(torch.cat([query, slot_scores], dim=-1), (0, padded - head_dim - num_slots, num_slots, 0))
    # 3. keys/values [B, kv_heads, slots + T, D + P]: unit-vector slots, then the causal keys
    slots = torch.zeros(num_slots, padded, dtype=query.dtype, device=query.device)
    slots[torch.arange(num_slots), head_dim + torch.arange(num_slots)] = 1
    slots = slots.expand(batch, num_kv_heads, num_slots, padded)
    keys_padded = torch.cat([slots, F.pad(causal_keys, (0, padded - head_dim))], dim=2)
    values_padded = torch.cat([slots, F.pad(causal_values, (0, padded - head_dim))], dim=2)
    # 4. one square causal SDPA; drop the dummy rows
    output = F.scaled_dot_product_attention(
        query_padded, keys_padded, values_padded, is_causal=True, scale=head_dim**-0.5, enable_gqa=True
    )[:, :, num_slots:]
    # 5. causal part + slot weights times the extra values
    slot_weights = output[..., head_dim : head_dim + num_slots]  # [B, heads, T, slots]
    extra = torch.stack([repeat_kv(v, num_heads) for v in extra_values], dim=-1)  # [B, heads, T, D, slots]
    return output[..., :head_dim] + (extra * slot_weights.unsqueeze(-2)).sum(-1)
