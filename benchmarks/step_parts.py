"""Where a speculative step's wall time goes, by decoder function, on a CPU.

Runs ``speculative_generate`` on the first MT-bench questions as ``eagle3 bench`` runs it on a
CPU (fused target forward, packed weights, bf16 draft head where native) with the decoder's
functions wrapped in wall-clock timers (CPU work is synchronous, so a function's time is its
own), and prints ms per step for each: target forwards (verification, plus the prompts'
prefills), drafting the tree, feeding the draft the accepted tokens, cache compaction,
verification, and the rest of the loop.

    python benchmarks/step_parts.py --target runs/target --draft runs/mini/draft07s2/best --tree 4/2/1
"""

from __future__ import annotations

import collections
import importlib
import time

import torch

from cpu_step import decoder_models, mt_bench_prompt, tree_parser
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.bench.runner import lay_out_for_cpu
from eagle3cli.decoding import DecodingConfig
from eagle3cli.target.hub import load_tokenizer

generate = importlib.import_module("eagle3cli.decoding.generate")  # the module (the package exports a function of that name)
PARTS = ("draft_step_tree", "draft_extend", "verify", "cut_length", "read_outcome")


def timed(owner: object, name: str, label: str, seconds: collections.Counter) -> None:
    """Replace ``owner.name`` by a wrapper adding its wall time to ``seconds[label]``."""
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[label] += time.perf_counter() - started
        return result

    setattr(owner, name, wrapper)


@torch.inference_mode()
def main() -> None:
    parser = tree_parser(__doc__)
    parser.add_argument("--questions", type=int, default=4, help="first MT-bench questions (first turns), after one warm-up")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    total_token, depth, top_k = (int(value) for value in args.tree.split("/"))
    target, draft = decoder_models(args.target, args.draft)
    lay_out_for_cpu(target, draft)
    tokenizer = load_tokenizer(str(args.target))
    questions = read_question_file(bundled_question_file("mt_bench"))[: args.questions]
    config = DecodingConfig(total_token=total_token, depth=depth, top_k=top_k, max_new_tokens=args.max_new_tokens,
                            stop_token_ids=(tokenizer.eos_token_id,))
    seconds: collections.Counter = collections.Counter()
    for name in PARTS:
        timed(generate, name, name, seconds)
    timed(target, "forward", "target forward", seconds)
    timed(target, "keep", "target cache compaction", seconds)
    generate.speculative_generate(target, draft, mt_bench_prompt(tokenizer, questions[0]), config)  # warm-up
    seconds.clear()
    wall, steps, tokens = 0.0, 0, 0
    for question in questions:
        started = time.perf_counter()
        result = generate.speculative_generate(target, draft, mt_bench_prompt(tokenizer, question), config)
        wall += time.perf_counter() - started
        steps += len(result.stats.accept_lengths)
        tokens += result.stats.num_new_tokens
    print(f"tree {args.tree}: {tokens} tokens in {steps} steps, τ {(tokens - len(questions)) / steps:.2f}, "
          f"{tokens / wall:.1f} tok/s, {wall / steps * 1e3:.1f} ms per step (prompt prefills included)\n")
    print("| part | ms per step | share |\n|---|---|---|")
    for label, value in seconds.most_common():
        print(f"| {label} | {value / steps * 1e3:.2f} | {value / wall:.0%} |")
    print(f"| rest of the loop | {(wall - sum(seconds.values())) / steps * 1e3:.2f} | {(wall - sum(seconds.values())) / wall:.0%} |")


if __name__ == "__main__":
    main()
