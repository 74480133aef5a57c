"""Packed float32 weights laid out by oneDNN for one row against several (``decoding.layout.PACK_ROWS``).

``torch.ops.mkldnn._reorder_linear_weight(weight, rows)`` lays a matrix out for products over
``rows`` rows. On a real target (SmolLM2-135M-Instruct, float32, eagle3's fused forward as
``eagle3 bench`` runs it on a CPU), one copy of the projections packed per layout: verify(16)
over a drafted 16/3/4 tree and decode(1) after contexts of several lengths, the matrix products
alone over 1, 4 and 16 rows, and plain greedy decoding — alternating round by round, logits
required close and tokens equal across layouts. Prints markdown tables (median and range).

    python benchmarks/pack_rows.py --target runs/target --draft runs/mini/draft07s2/best --layouts 1 4
"""

from __future__ import annotations

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
    plain_decoding(targets, tokenizer, args.decode_tokens, args.rounds)


if __name__ == "__main__":
    main()
