"""The target's forward on a CPU: transformers' (what ``eagle3 bench --target-forward
transformers`` runs) against eagle3's fused one (``decoding.fused_target``, the CPU default).

On a real target (SmolLM2-135M-Instruct, float32): transformers' forward as the bench ran it
before (linears packed for oneDNN, ``use_gqa_sdpa``) on one copy of the model, the fused forward
(q/k/v and gate/up stacked, packed) on another; verify(16) over a drafted 16/3/4 tree and
decode(1) after contexts of several lengths, then the fused forward's matrix products alone
over 1, 4 and 16 rows (the floor under those forwards), then plain greedy decoding after an
MT-bench prompt — alternating round by round, logits and tokens required equal. Prints markdown
tables (median and range).

    python benchmarks/cpu_target_forward.py --target runs/target --draft runs/mini/draft07s2/best
"""

from __future__ import annotations

import statistics
import time

import torch

from cpu_attention import compare, forward_parser
from cpu_step import load_models, mt_bench_prompt
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.bench.runner import lay_out_for_cpu
from eagle3cli.decoding import DecodingConfig, baseline_generate
from eagle3cli.decoding.fused_target import FusedTarget
from eagle3cli.decoding.target import HFTarget, use_gqa_sdpa
from eagle3cli.target.hub import load_tokenizer


@torch.inference_mode()
def main() -> None:
    parser = forward_parser(__doc__, [128, 512, 1024])
    parser.add_argument("--decode-tokens", type=int, default=128, help="tokens per plain-decoding round")
    args = parser.parse_args()
    torch.manual_seed(0)
    hf_model, draft = load_models(args.target, args.draft, "packed")
    assert use_gqa_sdpa(hf_model)
    fused_model, _ = load_models(args.target, args.draft, "row")
    fused = FusedTarget(fused_model, draft.config.aux_layer_ids)
    lay_out_for_cpu(fused, None)  # as eagle3 bench lays it out
    targets = {"transformers": HFTarget(hf_model, draft.config.aux_layer_ids), "fused": fused}
    tokenizer = load_tokenizer(str(args.target))
    compare(targets, draft, tokenizer, args.contexts, args.rounds)

    products(fused, args.rounds)

    plain_decoding(targets, tokenizer, args.decode_tokens, args.rounds)


def plain_decoding(targets: dict[str, HFTarget], tokenizer, decode_tokens: int, rounds: int) -> None:
    """Plain greedy decoding after MT-bench question 81 through each target, alternating round by
    round; the tokens are required equal to the first target's. Prints a markdown table (tok/s)."""
    prompt = mt_bench_prompt(tokenizer, read_question_file(bundled_question_file("mt_bench"))[0])
    config = DecodingConfig(max_new_tokens=decode_tokens)
    speeds: dict[str, list[float]] = {name: [] for name in targets}
    tokens = {}
    reference = next(iter(targets))
    for round_index in range(max(3, rounds // 2) + 1):
        order = list(targets.items()) if round_index % 2 else list(targets.items())[::-1]
        for name, target in order:
            started = time.perf_counter()
            tokens[name] = baseline_generate(target, prompt, config).tokens.tolist()
            if round_index:
                speeds[name].append(len(tokens[name]) / (time.perf_counter() - started))
        assert all(answer == tokens[reference] for answer in tokens.values())
    print(f"\nplain greedy decoding, {len(prompt)}-token prompt, {decode_tokens} tokens (prefill included), tok/s:\n")
    print(f"| target | median | range | / {reference} |\n|---|---|---|---|")
    base = statistics.median(speeds[reference])
    for name, values in speeds.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} | {statistics.median(values) / base:.2f} |")


def products(fused: FusedTarget, rounds: int) -> None:
    """The fused forward's matrix products alone (every layer's four, then the LM head) over 1, 4
    and 16 rows: the floor under decode(1), verify(4) and verify(16) with these weights."""
    hidden = fused.base.embed_tokens.embedding_dim
    steps = []
    for layer in fused.fused.layers:
        steps += [(layer.qkv, hidden), (layer.o, layer.o.in_features), (layer.gate_up, hidden), (layer.down, layer.intermediate)]
    steps.append((fused.fused.head, hidden))
    times: dict[int, list[float]] = {}
    for round_index in range(rounds + 1):
        for rows in (1, 4, 16):
            inputs = {width: torch.randn(1, rows, width) for width in {width for _, width in steps}}
            started = time.perf_counter()
            for linear, width in steps:
                linear(inputs[width])
            if round_index:
                times.setdefault(rows, []).append((time.perf_counter() - started) * 1e3)
    flops = 2 * sum(width * (linear.out_features) for linear, width in steps)
    print("\nthe fused forward's matrix products alone (no norms, RoPE, attention, cache), ms:\n")
    print("| rows | median | range | GFLOP/s |\n|---|---|---|---|")
    for rows, values in times.items():
        median = statistics.median(values)
        print(f"| {rows} | {median:.1f} | {min(values):.1f}–{max(values):.1f} | {rows * flops / median / 1e6:.0f} |")


if __name__ == "__main__":
    main()
