"""Tree verification with grouped-query attention on a CPU: transformers' ``sdpa`` (keys and
values repeated to every query head under a mask) against ``use_gqa_sdpa`` (passed as they are).

On a real target (SmolLM2-135M-Instruct, float32, linears packed as ``eagle3 bench`` packs them;
9 query heads share 3 key-value heads) and a draft: verify(16) over a drafted 16/3/4 tree and
decode(1) after contexts of several lengths (MT-bench questions run together), the two
attention functions alternating round by round on two copies of the model; the logits are
required equal. Prints a markdown table (median and range).

    python benchmarks/cpu_attention.py --target runs/target --draft runs/mini/draft07e2/best
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from cpu_step import load_models
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import draft_step_tree, extend_context, tree_inputs
from eagle3cli.decoding.target import HFTarget, use_gqa_sdpa
from eagle3cli.target.hub import load_tokenizer


def forward_parser(doc: str, contexts: list[int]) -> argparse.ArgumentParser:
    """The flags of the benchmarks that time target forwards with :func:`compare`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--draft", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--contexts", type=int, nargs="+", default=contexts)
    return parser


@torch.inference_mode()
def main() -> None:
    args = forward_parser(__doc__, [128, 512, 1024, 2048]).parse_args()
    torch.manual_seed(0)
    repeated, draft = load_models(args.target, args.draft, "packed")
    grouped, _ = load_models(args.target, args.draft, "packed")
    assert use_gqa_sdpa(grouped)
    targets = {"sdpa (repeats)": HFTarget(repeated, draft.config.aux_layer_ids), "use_gqa_sdpa": HFTarget(grouped, draft.config.aux_layer_ids)}
    compare(targets, draft, load_tokenizer(str(args.target)), args.contexts, args.rounds)


def compare(targets: dict[str, HFTarget], draft: torch.nn.Module, tokenizer, contexts: list[int], rounds: int) -> None:
    """verify(16) and decode(1) of each target after each context length, alternating round by
    round, logits required equal to the first target's; prints a markdown table, ratios to the first."""
    text = " ".join(question.turns[0] for question in read_question_file(bundled_question_file("mt_bench")))
    ids = torch.tensor(tokenizer(text)["input_ids"])
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=8)
    reference = next(iter(targets))
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}\n")
    print(f"| context | forward | target | median ms | range ms | / {reference} |\n|---|---|---|---|---|---|")
    for length in contexts:
        states = {name: extend_context(target, draft, ids[:length], config)[0] for name, target in targets.items()}
        state = next(iter(states.values()))
        prefix = state.cached_length
        _, tree = draft_step_tree(draft, state, config)
        positions, mask = tree_inputs(tree, prefix)
        one = state.tokens[-1:][None]
        runs = {
            "verify(16)": lambda target, cache: target.forward(tree.tokens[None], positions, mask, cache).logits,
            "decode(1)": lambda target, cache: target.forward(one, torch.tensor([[prefix]]), None, cache, last_logits_only=True).logits,
        }
        times: dict[tuple[str, str], list[float]] = {}
        for round_index in range(rounds + 1):
            order = list(targets.items()) if round_index % 2 else list(targets.items())[::-1]
            for kind, run in runs.items():
                logits = {}
                for name, target in order:
                    cache = states[name].target_cache
                    started = time.perf_counter()
                    logits[name] = run(target, cache)
                    elapsed = time.perf_counter() - started
                    target.crop(cache, prefix)
                    if round_index:  # the first round warms up
                        times.setdefault((kind, name), []).append(elapsed * 1e3)
                for name in targets:
                    torch.testing.assert_close(logits[name], logits[reference], rtol=1e-4, atol=1e-4)
        for kind in runs:
            base = statistics.median(times[(kind, reference)])
            for name in targets:
                values = times[(kind, name)]
                print(f"| {length} | {kind} | {name} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} | "
                      f"{statistics.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
