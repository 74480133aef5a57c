"""Packed float32 weights laid out by oneDNN for one row against several (``decoding.layout.PACK_ROWS``).

``torch.ops.mkldnn._reorder_linear_weight(weight, rows)`` lays a matrix out for products over
``rows`` rows. On a real target (SmolLM2-135M-Instruct, float32, eagle3's fused forward as
``eagle3 bench`` runs it on a CPU), one copy of the projections packed per layout: verify(16)
over a drafted 16/3/4 tree and decode(1) after contexts of several lengths, the matrix products
alone over 1, 4 and 16 rows, the cost of verifying 1 to 16 tree nodes after 200 tokens, and plain
greedy decoding — alternating round by round, logits required close and tokens equal across
layouts. Prints markdown tables (median and range).

    python benchmarks/pack_rows.py --target runs/target --draft runs/mini/draft07s2/best --layouts 1 4
"""

from __future__ import annotations

import statistics
import time

import torch

from cpu_attention import compare, forward_parser
from cpu_step import load_models
from cpu_target_forward import plain_decoding, products
from eagle3cli.decoding.fused_target import FusedTarget
from eagle3cli.decoding.layout import PACK_ROWS, pack_linears
from eagle3cli.target.hub import load_tokenizer


@torch.inference_mode()
def main() -> None:
    parser = forward_parser(__doc__, [128, 512])
    parser.add_argument("--layouts", type=int, nargs="+", default=[1, PACK_ROWS], help="the rows each packed copy is laid out for")
    parser.add_argument("--decode-tokens", type=int, default=128, help="tokens per plain-decoding round")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, draft = load_models(args.target, args.draft, "row")
    targets = {}
    for rows in args.layouts:
        target = FusedTarget(model, draft.config.aux_layer_ids)  # its own stacked matrices; the head is packed anew
        pack_linears(target.fused, keep_weights=False, rows=rows)
        targets[f"packed for {rows}"] = target
    tokenizer = load_tokenizer(str(args.target))
    compare(targets, draft, tokenizer, args.contexts, args.rounds)
    for name, target in targets.items():
        print(f"\n{name}:")
        products(target, args.rounds)
    verify_sizes(targets, args.rounds)
    lone_rows(targets)
    plain_decoding(targets, tokenizer, args.decode_tokens, args.rounds)


def lone_rows(targets: dict[str, FusedTarget]) -> None:
    """Per layout and matrix: is a row's product the same bits alone as among 16 rows? (If so,
    a one-token step and a tree verification compute that row alike.)"""
    layer = {name: (target.fused.layers[0], target.fused.head) for name, target in targets.items()}
    print("\na row's product alone equals the same row's among 16 (first layer's matrices, the head):\n")
    print("| layout | qkv | o | gate_up | down | head |\n|---|---|---|---|---|---|")
    for name, (fused, head) in layer.items():
        cells = []
        for linear in (fused.qkv, fused.o, fused.gate_up, fused.down, head):
            rows = torch.randn(1, 16, linear.in_features)
            cells.append("yes" if torch.equal(linear(rows[:, :1]), linear(rows)[:, :1]) else "no")
        print(f"| {name} | " + " | ".join(cells) + " |")


def verify_sizes(targets: dict[str, FusedTarget], rounds: int, context: int = 200) -> None:
    """ms of one forward over 1-16 nodes (all visible to each other) after ``context`` tokens,
    each layout in turn; prints a markdown table, and each size's cost over one node's."""
    ids = torch.randint(0, 40000, (1, context))
    caches = {name: target.forward(ids, torch.arange(context)[None], None, None, last_logits_only=True).cache
              for name, target in targets.items()}
    sizes = (1, 2, 4, 6, 8, 12, 16)
    times: dict[tuple[str, int], list[float]] = {}
    for round_index in range(rounds + 1):
        for size in sizes:
            order = list(targets.items()) if round_index % 2 else list(targets.items())[::-1]
            for name, target in order:
                mask = torch.ones(1, 1, size, context + size, dtype=torch.bool)
                started = time.perf_counter()
                target.forward(ids[:, :size], torch.arange(context, context + size)[None], mask, caches[name])
                elapsed = time.perf_counter() - started
                target.crop(caches[name], context)
                if round_index:
                    times.setdefault((name, size), []).append(elapsed * 1e3)
    print(f"\none forward over N nodes after {context} tokens, ms (÷ one node's):\n")
    print("| layout | " + " | ".join(f"N = {size}" for size in sizes) + " |\n|---|" + "---|" * len(sizes))
    for name in targets:
        one = statistics.median(times[(name, 1)])
        cells = [f"{statistics.median(times[(name, size)]):.1f} ({statistics.median(times[(name, size)]) / one:.2f})" for size in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
