"""The decoder's target cache: preallocated (in-place writes) against transformers' DynamicCache
and StaticCache.

On a real target (SmolLM2-135M-Instruct, float32) and a draft: (1) one target forward of a
16-node tree and one decode step at several context lengths, where DynamicCache copies every
layer's keys and values per forward and StaticCache attends over all its positions (masked
past the length); (2) whole greedy generations (speculative with the CPU tree 16/3/4, and plain
decoding) on MT-bench first turns, the caches alternating question by question, with identical
tokens required. Prints markdown tables (median and range).

    python benchmarks/target_cache.py --target runs/fp8/target --draft runs/fp8/fp8-vs-bf16/draft-bf16-seed0/best
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import StaticCache

from cpu_step import LAYOUTS, alternating_generations, generation_parser, load_models
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
from eagle3cli.decoding.target import HFTarget
from eagle3cli.target.hub import load_tokenizer

VARIANTS = ("preallocated", "dynamic", "static")


class StaticTarget(HFTarget):
    """transformers' ``StaticCache`` behind the decoder's adapter: sized at the prefill (its
    length + ``headroom``), written at ``cumulative_length``, cropped by moving that back; the
    tree mask is padded to the cache's width (attention reads every position, masked past the
    length). Compaction is the adapter's own in-place gather."""

    def __init__(self, model, aux_layer_ids, headroom: int) -> None:
        super().__init__(model, aux_layer_ids, preallocated=False)
        self.headroom = headroom

    def forward(self, input_ids, position_ids, mask, cache, *, last_logits_only=False):
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=input_ids.shape[1] + self.headroom)
        if mask is not None:
            mask = torch.nn.functional.pad(mask, (0, cache.layers[0].max_cache_len - mask.shape[-1]), value=False)
        return super().forward(input_ids, position_ids, mask, cache, last_logits_only=last_logits_only)


def make_target(name: str, model, aux_layer_ids, headroom: int) -> HFTarget:
    if name == "static":
        return StaticTarget(model, aux_layer_ids, headroom)
    return HFTarget(model, aux_layer_ids, preallocated=name == "preallocated")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f}"


@torch.inference_mode()
def forwards(targets: dict[str, HFTarget], draft, tokenizer, rounds: int) -> None:
    """Tree verify(16) and decode(1) after contexts of several lengths, alternating the caches."""
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=8)
    text = " ".join(question.turns[0] for question in read_question_file(bundled_question_file("mt_bench")))
    ids = torch.tensor(tokenizer(text)["input_ids"])
    print("| context | forward | cache | median ms | range ms |\n|---|---|---|---|---|")
    for length in (256, 1024, 2048):
        prompt = ids[:length]
        states = {name: extend_context(target, draft, prompt, config)[0] for name, target in targets.items()}
        state = states["dynamic"]
        _, tree = draft_step_tree(draft, state, config)
        prefix = state.cached_length
        positions, mask = tree_inputs(tree, prefix)
        one = state.tokens[-1:][None]
        times: dict[tuple[str, str], list[float]] = {}
        for round_index in range(rounds + 1):
            for name, target in targets.items():
                target_cache = states[name].target_cache
                for kind, run in (
                    ("verify(16)", lambda: target.forward(tree.tokens[None], positions, mask, target_cache)),
                    ("decode(1)", lambda: target.forward(one, torch.tensor([[prefix]]), None, target_cache, last_logits_only=True)),
                ):
                    started = time.perf_counter()
                    run()
                    elapsed = time.perf_counter() - started
                    target.crop(target_cache, prefix)
                    if round_index:  # the first round warms up
                        times.setdefault((kind, name), []).append(elapsed * 1e3)
        for (kind, name), values in sorted(times.items()):
            print(f"| {length} | {kind} | {name} | {spread(values)} |")


@torch.inference_mode()
def generations(targets: dict[str, HFTarget], draft, tokenizer, num_questions: int, max_new_tokens: int) -> None:
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=max_new_tokens)
    rates, answers, _ = alternating_generations({name: (target, draft) for name, target in targets.items()},
                                                tokenizer, num_questions, config)
    for index, outputs in enumerate(answers, 1):
        for mode in ("speculative", "plain"):
            for name in targets:
                assert outputs[(mode, name)] == outputs[(mode, "dynamic")], f"{mode} tokens of {name} differ on question {index}"
    print(f"\n| decoding ({num_questions} MT-bench first turns, ≤ {max_new_tokens} tokens, 16/3/4) | cache | tok/s median | range |\n|---|---|---|---|")
    for (mode, name), values in sorted(rates.items()):
        print(f"| {mode} | {name} | {spread(values)} |")
    print("\n| decoding | cache | tok/s / dynamic's, per question: median | range |\n|---|---|---|---|")
    for mode in ("speculative", "plain"):
        for name in targets:
            if name != "dynamic":
                ratios = [a / b for a, b in zip(rates[(mode, name)], rates[(mode, "dynamic")])]
                print(f"| {mode} | {name} | {statistics.median(ratios):.3f} | {min(ratios):.3f}–{max(ratios):.3f} |")


def main() -> None:
    parser = generation_parser(__doc__)
    parser.add_argument("--skip-forwards", action="store_true", help="only the whole generations")
    parser.add_argument("--caches", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--layout", choices=LAYOUTS, default="packed", help="weight layout (row: as before the layout change)")
    args = parser.parse_args()
    model, draft = load_models(args.target, args.draft, args.layout)
    tokenizer = load_tokenizer(str(args.target))
    headroom = args.max_new_tokens + 64  # the answer, a tree of 16 and the step's accepted tokens
    targets = {name: make_target(name, model, draft.config.aux_layer_ids, headroom) for name in sorted(set(args.caches) | {"dynamic"})}
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}\n")
    if not args.skip_forwards:
        forwards(targets, draft, tokenizer, args.rounds)
    generations(targets, draft, tokenizer, args.questions, args.max_new_tokens)


if __name__ == "__main__":
    main()
