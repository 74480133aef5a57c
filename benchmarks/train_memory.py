"""Peak memory and tokens/s of one training step (training-time test, ``ttt_length`` steps,
forward + backward + AdamW) against sequence length.

The training-time-test attention must keep memory linear in the sequence length; a dense
``[T, (i + 1) T]`` fp32 score matrix per unroll step (``--attention dense``, the reference
the tests compare against) grows quadratically and runs out of memory at long contexts.

    python benchmarks/train_memory.py --device cuda --preset llama3-8b --lengths 1024,4096,16384
    python benchmarks/train_memory.py --device cuda --preset llama3-8b --attention dense --lengths 1024,2048
    python benchmarks/train_memory.py --device cpu --preset small --lengths 256,512,1024,2048

Memory, both devices: the bytes autograd saves for the backward pass (every distinct saved
tensor, counted once) — the activations that grow with the sequence. CUDA also reports the
step's true peak: ``torch.cuda.max_memory_allocated`` minus what was allocated before it
(weights, optimizer state, inputs), transient buffers included. (Peak RSS on CPU is blurred by
the allocator's caching, so it is not used.) Inputs are random — the target is not run:
aux/last hidden states and a random ``lm_head``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.training import attention as ttt_attention
from eagle3cli.training.draft_setup import build_draft
from eagle3cli.training.step import TargetBatch, TargetHead, target_rows, unrolled_step

PRESETS = {
    # Llama-3.1-8B's shape (the draft copies its target's attention and MLP shape)
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, vocab_size=128256, draft_vocab_size=32000),
    "small": dict(hidden_size=512, intermediate_size=1408, num_attention_heads=8, num_key_value_heads=2,
                  head_dim=64, vocab_size=32000, draft_vocab_size=8000),
}


def dense_extra_key_attention(query, causal_keys, causal_values, extra_keys, extra_values):
    """The quadratic reference: explicit fp32 scores ``[B, heads, T, T + slots]`` per step."""
    num_heads, seq, head_dim = query.shape[1], query.shape[2], query.shape[3]
    expand = lambda tensor: tensor.repeat_interleave(num_heads // tensor.shape[1], dim=1)  # noqa: E731
    causal = (query.float() @ expand(causal_keys).float().transpose(-1, -2)) / head_dim**0.5
    causal = causal.masked_fill(~torch.ones(seq, seq, dtype=torch.bool, device=query.device).tril(), float("-inf"))
    extra = torch.stack([(query.float() * expand(key).float()).sum(-1) / head_dim**0.5 for key in extra_keys], dim=-1)
    weights = torch.cat([causal, extra], dim=-1).softmax(-1)
    output = weights[..., :seq] @ expand(causal_values).float()
    for slot, value in enumerate(extra_values):
        output = output + weights[..., seq + slot, None] * expand(value).float()
    return output.to(query.dtype)


def make_draft(preset: str, device: torch.device, dtype: torch.dtype):
    """A random draft of the preset's shape, its vocabulary map, and a random target ``lm_head`` (split once, as the trainer does)."""
    shape = PRESETS[preset]
    config = DraftConfig(**shape, rms_norm_eps=1e-6, rope_theta=500000.0, max_position_embeddings=131072,
                         target_hidden_size=shape["hidden_size"], aux_layer_ids=(2, 16, 29))
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 1000, (config.vocab_size,), generator=generator)
    embed = torch.randn(config.vocab_size, config.hidden_size, generator=generator, dtype=dtype) * 0.02
    draft = build_draft(config, build_vocab_map(counts, config.draft_vocab_size), embed, seed=0).to(device)
    lm_head = (torch.randn(config.vocab_size, config.hidden_size, generator=generator, dtype=dtype) * 0.02).to(device)
    return draft, TargetHead.split(lm_head, draft.t2d.to(device))


def make_batch(config: DraftConfig, length: int, device: torch.device, dtype: torch.dtype) -> TargetBatch:
    """One sample of ``length`` tokens, every position trained."""
    generator = torch.Generator().manual_seed(length)
    return TargetBatch(
        input_ids=torch.randint(0, config.vocab_size, (1, length), generator=generator).to(device),
        attention_mask=torch.ones(1, length, dtype=torch.bool, device=device),
        loss_mask=torch.ones(1, length, dtype=torch.bool, device=device),
        aux_hidden=torch.randn(1, length, 3 * config.hidden_size, generator=generator, dtype=dtype).to(device),
        last_hidden=torch.randn(1, length, config.hidden_size, generator=generator, dtype=dtype).to(device),
    )


def training_step(draft, optimizer, head: TargetHead, batch, ttt_length: int, autocast_dtype: torch.dtype | None) -> None:
    rows = target_rows(batch.last_hidden, batch.loss_mask, head)
    device_type = batch.input_ids.device.type
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        output = unrolled_step(draft, batch, rows, ttt_length=ttt_length, loss_decay=0.8)
    output.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def saved_for_backward_bytes(draft, head: TargetHead, batch, ttt_length: int, autocast_dtype: torch.dtype | None) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one step."""
    saved: dict[tuple[int, tuple[int, ...]], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[(tensor.data_ptr(), tuple(tensor.shape))] = tensor.numel() * tensor.element_size()
        return tensor

    rows = target_rows(batch.last_hidden, batch.loss_mask, head)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast(batch.input_ids.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            unrolled_step(draft, batch, rows, ttt_length=ttt_length, loss_decay=0.8)
    parameters = {parameter.data_ptr() for parameter in draft.parameters()}
    return sum(size for (pointer, _), size in saved.items() if pointer not in parameters)


def measure(args: argparse.Namespace, length: int, draft, optimizer, head: TargetHead) -> dict:
    on_cuda = args.device == "cuda"
    autocast_dtype = torch.bfloat16 if on_cuda else None
    batch = make_batch(draft.config, length, head.draft_rows.device, head.draft_rows.dtype)
    training_step(draft, optimizer, head, batch, args.ttt_length, autocast_dtype)  # warm-up (optimizer state too)
    result = {"length": length}
    result["saved_for_backward_gib"] = saved_for_backward_bytes(draft, head, batch, args.ttt_length, autocast_dtype) / 2**30
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    started = time.perf_counter()
    for _ in range(args.num_steps):
        training_step(draft, optimizer, head, batch, args.ttt_length, autocast_dtype)
    if on_cuda:
        torch.cuda.synchronize()
        result["peak_step_gib"] = (torch.cuda.max_memory_allocated() - before) / 2**30
    seconds = (time.perf_counter() - started) / args.num_steps
    return {**result, "step_s": seconds, "tokens_per_s": length / seconds}


def run_length(args: argparse.Namespace, length: int, draft, optimizer, head: TargetHead) -> dict:
    try:
        return measure(args, length, draft, optimizer, head)
    except torch.OutOfMemoryError as error:
        return {"length": length, "oom": True, "error": str(error).splitlines()[0][:300]}
    finally:
        if args.device == "cuda":
            torch.cuda.empty_cache()


def growth_exponent(results: list[dict]) -> float | None:
    """Fitted ``p`` in memory ∝ length^p between the two longest lengths that ran."""
    ran = [result for result in results if not result.get("oom")]
    if len(ran) < 2:
        return None
    short, long = ran[-2], ran[-1]
    key = "peak_step_gib" if "peak_step_gib" in long else "saved_for_backward_gib"
    return math.log(long[key] / short[key]) / math.log(long["length"] / short["length"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b")
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--ttt-length", type=int, default=7)
    parser.add_argument("--num-steps", type=int, default=3)
    parser.add_argument("--attention", choices=["ttt", "dense"], default="ttt")
    args = parser.parse_args()
    if args.attention == "dense":
        ttt_attention.attention_with_extra_keys = dense_extra_key_attention
    lengths = [int(value) for value in args.lengths.split(",")]
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    draft, head = make_draft(args.preset, torch.device(args.device), dtype)
    optimizer = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-5)
    results = []
    for length in lengths:
        results.append(run_length(args, length, draft, optimizer, head))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    summary = {"device": device_name, "preset": args.preset, "attention": args.attention, "ttt_length": args.ttt_length,
               "results": results, "growth_exponent": growth_exponent(results)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
