"""The target's LM head over a tree's nodes with children only, against over every node, on a CPU.

Greedy or sampled, acceptance compares each node with its parent's choice, so only nodes with
children need the target's logits — and the deepest accepted node's, for the bonus token, which
for a leaf is one more row afterwards. On a CPU the head over a 16-node tree is bound by
arithmetic (SmolLM2: 49,152 x 576), so fewer rows take less time. ``eagle3 bench`` decodes as
``inner rows`` (the fused target's ``partial_logits``); ``every row`` is the same target with it off.

On a real target and draft, as ``eagle3 bench`` runs them on a CPU (fused target, packed weights),
after the first MT-bench prompt, medians of alternating rounds:

1. target forwards: decode(1), verify(N) with every row's logits and with the inner nodes' only;
2. whole greedy generations on MT-bench first turns, the variants alternating: tokens/s
   speculative and plain, τ, speed-up, speed-up ÷ τ, and whether the answers are identical;
3. how many rows the head ran per step, and how often a path ended at a leaf;
4. with ``--shapes``, the forwards of step 1 on random float32 targets shaped like larger CPU
   targets with large vocabularies (Qwen3-0.6B: 151,936 x 1,024 head; Llama-3.2-1B: 128,256 x
   2,048), over a fixed 16-node tree with 6 nodes with children, after 128 tokens.

    python benchmarks/partial_logits.py --target runs/target --draft runs/mini/draft21/best --tree 16/3/4 \
        --shapes qwen3-0.6b llama-3.2-1b
"""

from __future__ import annotations

import copy
import importlib
import statistics

import torch

from cpu_step import (alternating_generations, decode_one, decoder_models, medians, mt_bench_prompt, row,
                      tree_parser)
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.bench.runner import lay_out_for_cpu
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.fused_target import FusedTarget
from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
from eagle3cli.decoding.state import DecodingState
from eagle3cli.decoding.tree import DraftTree, build_tree
from eagle3cli.target.hub import load_tokenizer
from gpu_decoder import build_target

generate = importlib.import_module("eagle3cli.decoding.generate")  # the module (the package exports a function of that name)


SHAPES = {  # name: (family, shape)
    "qwen3-0.6b": ("qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, vocab_size=151936)),
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                                   num_key_value_heads=8, head_dim=64, vocab_size=128256)),
}
TREE_PARENTS = [-1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 5, 5, 5, 6, 11]  # 16 nodes, 6 with children (0, 1, 2, 5, 6, 11)


def forward_table(target: FusedTarget, state: DecodingState, tree: DraftTree, rounds: int) -> None:
    """Step 1's table after ``state``: decode(1), verify(N) over every row and over the inner
    nodes, one more row."""
    prefix = state.cached_length
    inputs, inner = (tree.tokens[None], *tree_inputs(tree, prefix)), tree.inner_nodes()
    leaf = torch.tensor([tree.num_nodes - 1])  # the last node has no child

    def verify(**rows):
        return lambda: target.crop(target.forward(*inputs, state.target_cache, **rows).cache, prefix)

    out = target.forward(*inputs, state.target_cache, logit_rows=inner)
    target.crop(out.cache, prefix)
    figures = medians({"decode(1)": decode_one(target, state), f"verify({tree.num_nodes}), every row": verify(),
                       f"verify({tree.num_nodes}), {inner.numel()} inner rows": verify(logit_rows=inner),
                       "one more row (a leaf's)": lambda: out.head(leaf)}, rounds)
    print("| forward | median ms | min–max | ÷ decode(1) |\n|---|---|---|---|")
    for name, value in figures.items():
        print(row(name, value, figures["decode(1)"][0]))


def shaped(name: str, rounds: int) -> None:
    """Step 4: a random target of the named shape, fused and packed as ``eagle3 bench`` runs it."""
    family, shape = SHAPES[name]
    target = FusedTarget(build_target(family, shape, "cpu", torch.float32), (1, 2, 3))
    lay_out_for_cpu(target, None)
    generator = torch.Generator().manual_seed(0)
    context = torch.randint(shape["vocab_size"], (1, 129), generator=generator)
    state = DecodingState(context[0], target.forward(context[:, :128], torch.arange(128)[None], None, None).cache)
    tokens = torch.cat([context[0, 128:], torch.randint(shape["vocab_size"], (len(TREE_PARENTS) - 1,), generator=generator)])
    tree = build_tree(tokens, torch.tensor(TREE_PARENTS), torch.zeros(len(TREE_PARENTS)), max_depth=4)
    print(f"\n{name}-shaped random target (float32, {sum(p.numel() for p in target.model.parameters()) / 1e9:.2f}B "
          f"parameters, head {shape['vocab_size']:,} x {shape['hidden_size']:,}), after 128 tokens:\n")
    forward_table(target, state, tree, rounds)


@torch.inference_mode()
def main() -> None:
    parser = tree_parser(__doc__)
    parser.set_defaults(tree="16/3/4")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds of the forward timings")
    parser.add_argument("--questions", type=int, default=10, help="MT-bench first turns decoded, after one warm-up")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--shapes", nargs="*", choices=SHAPES, default=[], help="also time random targets of these shapes")
    args = parser.parse_args()
    total_token, depth, top_k = (int(value) for value in args.tree.split("/"))
    inner_target, draft = decoder_models(args.target, args.draft)
    lay_out_for_cpu(inner_target, draft)
    assert inner_target.partial_logits, "the fused target computes every row here (not on a CPU?)"
    every_target = copy.copy(inner_target)  # the same model and packed products, the head over every node
    every_target.partial_logits = False
    tokenizer = load_tokenizer(str(args.target))
    config = DecodingConfig(total_token=total_token, depth=depth, top_k=top_k, max_new_tokens=args.max_new_tokens,
                            stop_token_ids=(tokenizer.eos_token_id,))

    # 1. Forwards after the first MT-bench prompt.
    question = read_question_file(bundled_question_file("mt_bench"))[0]
    state, _ = extend_context(inner_target, draft, mt_bench_prompt(tokenizer, question), config)
    _, tree = draft_step_tree(draft, state, config)
    print(f"tree {args.tree} after {state.cached_length} tokens: {tree.num_nodes} nodes, {tree.inner_nodes().numel()} with children\n")
    forward_table(inner_target, state, tree, args.rounds)

    # 2. Whole generations, the variants alternating.
    rates, answers, accepted = alternating_generations({"every row": (every_target, draft), "inner rows": (inner_target, draft)},
                                                       tokenizer, args.questions, config)
    same = sum(answer[("speculative", "every row")] == answer[("speculative", "inner rows")] == answer[("plain", "inner rows")]
               for answer in answers)
    print(f"\nMT-bench first turns 1–{args.questions}, greedy, ≤ {args.max_new_tokens} tokens; "
          f"{same} of {len(answers)} answers identical across both variants and plain decoding\n")
    print("| LM head over | plain tok/s | speculative tok/s (min–max) | τ | speed-up | speed-up ÷ τ |\n|---|---|---|---|---|---|")
    for name in ("every row", "inner rows"):
        plain, speculative = (statistics.median(rates[(mode, name)]) for mode in ("plain", "speculative"))
        tau = statistics.mean(accepted[name])
        low, high = min(rates[("speculative", name)]), max(rates[("speculative", name)])
        print(f"| {name} | {plain:.1f} | {speculative:.1f} ({low:.1f}–{high:.1f}) | {tau:.2f} | "
              f"{speculative / plain:.2f}x | {speculative / plain / tau:.2f} |")
    for mode in ("speculative", "plain"):  # question by question: inner rows ÷ every row (plain: the same work, the noise)
        ratios = [inner / every for inner, every in zip(rates[(mode, "inner rows")], rates[(mode, "every row")])]
        print(f"{mode}, inner rows ÷ every row, question by question: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})")

    # 3. Rows per step (one more pass with the inner rows, counted).
    counted: list[tuple[int, bool]] = []
    verify_inner = generate.verify_inner

    def counting(tree, inner, logits, head, config, generator):
        asked: list[int] = []
        result = verify_inner(tree, inner, logits, lambda rows: asked.append(1) or head(rows), config, generator)
        counted.append((inner.numel(), bool(asked)))
        return result

    generate.verify_inner = counting
    for question in read_question_file(bundled_question_file("mt_bench"))[1 : args.questions + 1]:
        generate.speculative_generate(inner_target, draft, mt_bench_prompt(tokenizer, question), config)
    generate.verify_inner = verify_inner
    print(f"\nper step: {statistics.mean(rows for rows, _ in counted):.2f} of {tree.num_nodes} rows through the head "
          f"(min {min(rows for rows, _ in counted)}, max {max(rows for rows, _ in counted)}); "
          f"{sum(leaf for _, leaf in counted) / len(counted):.0%} of {len(counted)} steps ended at a leaf (one more row)")
    for name in args.shapes:
        shaped(name, args.rounds)


if __name__ == "__main__":
    main()
