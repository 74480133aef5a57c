"""The shared training step: training-time-test attention, loss masking, metrics, learning."""

from __future__ import annotations

import pytest
import torch

from builders.training import TARGET_HIDDEN, VOCAB_SIZE, pad_batch, random_sample, single_thread_torch, tiny_draft
from eagle3cli.draft.attention import causal_attention
from eagle3cli.training.attention import attention_with_extra_keys
from eagle3cli.training.metrics import MetricRow, summarize
from eagle3cli.training.step import TargetHead, at_least_fp32, layer_rms, shift_left, step_masks, target_rows, unroll, unrolled_step

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


def head_for(draft, dtype: torch.dtype = torch.float32) -> TargetHead:
    return TargetHead.split(lm_head(dtype=dtype), draft.t2d)


def step_on(draft, batch, **kwargs):
    rows = target_rows(batch.last_hidden, batch.loss_mask, head_for(draft, batch.last_hidden.dtype))
    return unrolled_step(draft, batch, rows, ttt_length=TTT_LENGTH, loss_decay=0.8, **kwargs)


def dense_step(draft, batch, head: torch.Tensor, loss_decay: float = 0.8) -> tuple[torch.Tensor, list[list[int]]]:
    """Reference: every position through the head, full-vocabulary target logits, masked after."""
    logits = batch.last_hidden @ head.T  # [B, T, V]
    trained = batch.loss_mask & draft.t2d[logits.argmax(-1)]
    probs = logits[..., draft.t2d].softmax(-1)
    masks = step_masks(trained, TTT_LENGTH)
    loss, counts = torch.zeros((), dtype=logits.dtype), []
    for step, hidden in enumerate(unroll(draft, batch.input_ids, batch.aux_hidden, TTT_LENGTH)):
        valid = batch.input_ids.shape[1] - 1 - step
        log_probs = at_least_fp32(draft.logits(hidden[:, :valid])).log_softmax(-1)
        mask = masks[step][:, :valid]
        loss = loss + loss_decay**step * ((-(probs[:, step + 1 :] * log_probs).sum(-1)) * mask).sum() / mask.sum().clamp(min=1)
        correct = (log_probs.argmax(-1) == probs[:, step + 1 :].argmax(-1)) & mask
        counts.append([int(mask.sum()), int(correct.sum())])
    return loss, counts


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
    rows = target_rows(batch.last_hidden, batch.loss_mask, head_for(draft))
    full_argmax = (batch.last_hidden @ lm_head().T).argmax(-1)
    assert torch.equal(rows.trained, batch.loss_mask & draft.t2d[full_argmax])
    assert 0 < int(rows.trained.sum()) < int(batch.loss_mask.sum())  # both cases occur
    sums = unrolled_step(draft, batch, rows, ttt_length=TTT_LENGTH, loss_decay=0.8).metric_sums
    expected = [int(rows.trained[0, step + 1 :].sum()) for step in range(TTT_LENGTH)]
    assert sums[MetricRow.NUM_TRAINED].tolist() == expected
    # one row per loss-mask position, probabilities over the draft vocabulary summing to one
    torch.testing.assert_close(rows.probs.sum(-1), torch.ones(int(batch.loss_mask.sum())))


def test_compacted_step_equals_every_position_through_the_head() -> None:
    draft = tiny_draft(dtype=torch.float64)
    batch = pad_batch([random_sample(11, seed=8, dtype=torch.float64), random_sample(16, seed=9, dtype=torch.float64)], 16)
    head = lm_head(dtype=torch.float64)
    output = unrolled_step(draft, batch, target_rows(batch.last_hidden, batch.loss_mask, TargetHead.split(head, draft.t2d)),
                           ttt_length=TTT_LENGTH, loss_decay=0.8)
    loss, counts = dense_step(draft, batch, head)
    torch.testing.assert_close(output.loss, loss, rtol=1e-12, atol=0)
    assert output.metric_sums[[MetricRow.NUM_TRAINED, MetricRow.NUM_CORRECT]].T.tolist() == counts


def test_target_argmax_ties_go_to_the_lower_id_as_argmax_does() -> None:
    draft = tiny_draft()
    batch = random_sample(12, seed=10)
    generator = torch.Generator().manual_seed(12)
    # small integers: every dot product is exact, whatever order a matmul sums in
    batch.last_hidden = torch.randint(1, 3, batch.last_hidden.shape, generator=generator).float()
    draft_ids, other_ids = draft.t2d.nonzero().flatten(), (~draft.t2d).nonzero().flatten()
    assert other_ids[0] < draft_ids[-1]  # the map keeps the last id: a tie can go either way
    for low, high, trained in ((draft_ids[0], other_ids[0], True), (other_ids[0], draft_ids[-1], False)):
        tied = torch.randint(-2, 3, (VOCAB_SIZE, TARGET_HIDDEN), generator=generator).float()
        tied[low] = tied[high] = 5  # the same, largest logit on every row
        full_argmax = (batch.last_hidden @ tied.T).argmax(-1)
        assert torch.equal(full_argmax, torch.full_like(full_argmax, int(low)))
        rows = target_rows(batch.last_hidden, batch.loss_mask, TargetHead.split(tied, draft.t2d))
        assert torch.equal(rows.trained, batch.loss_mask & trained)


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


def test_layer_rms_noise_scales_with_each_capture_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    draft = tiny_draft()
    sample = random_sample(10, seed=13)
    scales = torch.tensor([1.0, 25.0, 4.0]).repeat_interleave(TARGET_HIDDEN)
    sample.aux_hidden = sample.aux_hidden * scales
    batch = pad_batch([sample], 16)
    batch.aux_hidden[:, 10:] = 1000.0  # padding never enters the RMS
    expected = sample.aux_hidden[0].unflatten(-1, (3, -1)).pow(2).mean(dim=(0, 2)).sqrt()
    torch.testing.assert_close(layer_rms(batch.aux_hidden, batch.attention_mask), expected.repeat_interleave(TARGET_HIDDEN))
    fused_inputs = []
    fuse = draft.fuse
    monkeypatch.setattr(draft, "fuse", lambda aux: fused_inputs.append(aux) or fuse(aux))
    monkeypatch.setattr(torch, "randn_like", torch.ones_like)  # the noise becomes its std
    step_on(draft, batch, hidden_noise_std=0.1, hidden_noise_scale="layer-rms")
    step_on(draft, batch, hidden_noise_std=0.1)
    torch.testing.assert_close(fused_inputs[0] - batch.aux_hidden, (0.1 * layer_rms(batch.aux_hidden, batch.attention_mask)).expand_as(batch.aux_hidden),
                               rtol=0, atol=1e-4)  # x + d - x, with x up to 1000
    torch.testing.assert_close(fused_inputs[1] - batch.aux_hidden, torch.full_like(batch.aux_hidden, 0.1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("precision, cuda, native, expected", [
    ("auto", False, False, False), ("auto", False, True, True), ("auto", True, False, True),
    ("bf16", False, False, True), ("fp32", True, True, False),
])
def test_precision_auto_is_bf16_only_where_bf16_is_native(precision, cuda, native, expected, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.config import TrainHyperParameters
    from eagle3cli.training import accelerate_setup

    monkeypatch.setattr(accelerate_setup.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(accelerate_setup, "native_bf16", lambda device: native)
    assert accelerate_setup.bf16_training(TrainHyperParameters(precision=precision)) is expected
    assert TrainHyperParameters().precision == "auto"
