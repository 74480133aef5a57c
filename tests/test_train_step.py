"""The shared training step: training-time-test attention, loss masking, metrics, learning."""

from __future__ import annotations

import pytest
import torch

from builders.training import TARGET_HIDDEN, VOCAB_SIZE, pad_batch, random_sample, single_thread_torch, tiny_draft
from eagle3cli.draft.attention import causal_attention
from eagle3cli.training.attention import attention_with_extra_keys
from eagle3cli.training.metrics import MetricRow, summarize
from eagle3cli.training.step import shift_left, target_rows, unroll, unrolled_step

TTT_LENGTH = 4

single_thread = pytest.fixture(autouse=True, scope="module")(single_thread_torch)


def lm_head(seed: int = 7, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(VOCAB_SIZE, TARGET_HIDDEN, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def naive_extra_key_attention(query, causal_keys, causal_values, extra_keys, extra_values):
    """Dense fp64 reference: explicit [T, T + slots] scores, causal block + diagonal extras."""
    num_heads, seq, head_dim = query.shape[1], query.shape[2], query.shape[3]
    expand = lambda tensor: tensor.repeat_interleave(num_heads // tensor.shape[1], dim=1)  # noqa: E731
    causal = query @ expand(causal_keys).transpose(-1, -2) / head_dim**0.5
    causal = causal.masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))
    extra = torch.stack([(query * expand(key)).sum(-1) / head_dim**0.5 for key in extra_keys], dim=-1)
    weights = torch.cat([causal, extra], dim=-1).softmax(-1)
    output = weights[..., :seq] @ expand(causal_values)
    for slot, value in enumerate(extra_values):
        output = output + weights[..., seq + slot, None] * expand(value)
    return output


@pytest.mark.parametrize("num_slots", [1, 3, 9])
def test_extra_key_attention_equals_dense_reference_with_gradients(num_slots: int) -> None:
    torch.manual_seed(num_slots)
    shape_q, shape_kv = (2, 4, 10, 16), (2, 2, 10, 16)
    leaves = [torch.randn(shape_q, dtype=torch.float64, requires_grad=True)]
    leaves += [torch.randn(shape_kv, dtype=torch.float64, requires_grad=True) for _ in range(2 + 2 * num_slots)]
    query, keys, values = leaves[0], leaves[1], leaves[2]
    extra_keys, extra_values = leaves[3 : 3 + num_slots], leaves[3 + num_slots :]
    fused = attention_with_extra_keys(query, keys, values, extra_keys, extra_values)
    dense = naive_extra_key_attention(query, keys, values, extra_keys, extra_values)
    torch.testing.assert_close(fused, dense, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(fused)
    fused_grads = torch.autograd.grad((fused * weights).sum(), leaves)
    dense_grads = torch.autograd.grad((dense * weights).sum(), leaves)
    for fused_grad, dense_grad in zip(fused_grads, dense_grads):
        torch.testing.assert_close(fused_grad, dense_grad, rtol=1e-9, atol=1e-9)


def decode_style_reference(draft, batch, ttt_length: int) -> list[torch.Tensor]:
    """Each (position t, step i) output recomputed as chain decoding would: one causal layer
    call over the real context 0..t (step-0 inputs) followed by the i chained entries
    (token x[t+1+m], the previous step's output at t, rotary position t+m)."""
    input_ids, fused = batch.input_ids, draft.fuse(batch.aux_hidden)
    seq = input_ids.shape[1]
    tokens = lambda step: shift_left(input_ids, step + 1)  # noqa: E731
    outputs = [[None] * seq for _ in range(ttt_length)]
    for t in range(seq):
        for step in range(ttt_length):
            embeds = [draft.embed(tokens(0)[:, : t + 1])] + [draft.embed(tokens(m)[:, t : t + 1]) for m in range(1, step + 1)]
            hidden = [fused[:, : t + 1]] + [outputs[m - 1][t] for m in range(1, step + 1)]
            positions = torch.cat([torch.arange(t + 1), t + torch.arange(1, step + 1)])[None]
            out = draft.layer(torch.cat(embeds, 1), torch.cat(hidden, 1), positions, causal_attention)
            outputs[step][t] = out[:, -1:]
    return [torch.cat(step_outputs, dim=1) for step_outputs in outputs]


def test_unrolled_steps_equal_decode_style_recomputation_and_gradients() -> None:
    draft = tiny_draft(dtype=torch.float64)
    batch = random_sample(7, seed=1, dtype=torch.float64)
    unrolled = list(unroll(draft, batch.input_ids, batch.aux_hidden, TTT_LENGTH))
    reference = decode_style_reference(draft, batch, TTT_LENGTH)
    weights = [torch.randn_like(draft.logits(out)) for out in unrolled]
    parameters = [p for p in draft.parameters() if p.requires_grad]
    objective = lambda outputs: sum((draft.logits(o) * w).sum() for o, w in zip(outputs, weights))  # noqa: E731
    grads = torch.autograd.grad(objective(unrolled), parameters)
    reference_grads = torch.autograd.grad(objective(reference), parameters)
    for step in range(TTT_LENGTH):
        torch.testing.assert_close(unrolled[step], reference[step], rtol=1e-9, atol=1e-9)
    for grad, reference_grad in zip(grads, reference_grads):
        # LlamaRMSNorm computes in fp32 even for fp64 inputs: gradients agree to fp32 rounding
        torch.testing.assert_close(grad, reference_grad, rtol=1e-6, atol=1e-6)


def step_on(draft, batch, **kwargs):
    rows = target_rows(batch.last_hidden, batch.loss_mask, lm_head(dtype=batch.last_hidden.dtype), draft.t2d)
    return unrolled_step(draft, batch, rows, ttt_length=TTT_LENGTH, loss_decay=0.8, **kwargs)


def test_loss_and_metrics_exclude_padding() -> None:
    draft = tiny_draft(dtype=torch.float64)
    short, long = random_sample(9, seed=2, dtype=torch.float64), random_sample(14, seed=3, dtype=torch.float64)
    alone = step_on(draft, short)
    padded = step_on(draft, pad_batch([short], 20))
    torch.testing.assert_close(padded.loss, alone.loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(padded.metric_sums, alone.metric_sums, rtol=1e-12, atol=0)
    batched = step_on(draft, pad_batch([short, long], 20))
    separate = alone.metric_sums + step_on(draft, long).metric_sums
    torch.testing.assert_close(batched.metric_sums, separate, rtol=1e-12, atol=0)


def test_mask_covers_loss_mask_and_draft_vocab_only() -> None:
    draft = tiny_draft()
    batch = random_sample(12, seed=4)
    rows = target_rows(batch.last_hidden, batch.loss_mask, lm_head(), draft.t2d)
    full_argmax = (batch.last_hidden @ lm_head().T).argmax(-1)
    assert torch.equal(rows.trained, batch.loss_mask & draft.t2d[full_argmax])
    sums = unrolled_step(draft, batch, rows, ttt_length=TTT_LENGTH, loss_decay=0.8).metric_sums
    expected = [int(rows.trained[0, step + 1 :].sum()) for step in range(TTT_LENGTH)]
    assert sums[MetricRow.NUM_TRAINED].tolist() == expected
    # probabilities are over the draft vocabulary and sum to one
    torch.testing.assert_close(rows.probs.sum(-1), torch.ones(1, 12))


def test_summary_metrics_from_sums() -> None:
    sums = torch.zeros(5, 3, dtype=torch.float64)
    sums[MetricRow.LOSS_SUM] = torch.tensor([10.0, 20.0, 30.0])
    sums[MetricRow.NUM_TRAINED] = torch.tensor([10.0, 10.0, 10.0])
    sums[MetricRow.NUM_CORRECT] = torch.tensor([8.0, 6.0, 5.0])
    sums[MetricRow.NUM_CHAIN_ELIGIBLE] = torch.tensor([10.0, 8.0, 4.0])
    sums[MetricRow.NUM_CHAIN_CORRECT] = torch.tensor([8.0, 4.0, 2.0])
    metrics = summarize(sums, loss_decay=0.5)
    assert metrics["loss"] == pytest.approx(1 + 0.5 * 2 + 0.25 * 3)
    assert metrics["acc@1"] == pytest.approx(0.6)
    assert metrics["cond_acc@1"] == pytest.approx(0.5)
    assert metrics["sim_accept_len"] == pytest.approx(1 + 0.8 + 0.8 * 0.5 + 0.8 * 0.5 * 0.5)


def test_loss_falls_and_acc0_rises_when_fitting_a_batch() -> None:
    draft = tiny_draft(seed=5)
    batch = pad_batch([random_sample(24, seed=s) for s in range(4)], 24)
    optimizer = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(80):
        output = step_on(draft, batch)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        history.append(summarize(output.metric_sums, 0.8))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["acc@0"] > 0.9 > history[0]["acc@0"] + 0.3
    assert history[-1]["sim_accept_len"] > history[0]["sim_accept_len"] + 1


def test_hidden_noise_changes_the_loss_only_when_asked() -> None:
    draft = tiny_draft()
    batch = random_sample(10, seed=6)
    torch.manual_seed(0)
    clean = step_on(draft, batch).loss
    assert torch.equal(step_on(draft, batch, hidden_noise_std=0.0).loss, clean)
    assert not torch.equal(step_on(draft, batch, hidden_noise_std=0.5).loss, clean)
