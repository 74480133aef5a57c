"""The draft's layer as trained against fused for decoding (``decoding.fused_draft``), on a CPU.

On a real target (SmolLM2-135M-Instruct, float32, eagle3's fused forward) and a trained draft,
both laid out as ``eagle3 bench`` lays them out on a CPU except the draft's layer (one copy as
trained, one fused): one draft layer pass over a frontier of 1, 2 and 4 rows after an MT-bench
prompt, drafting a whole tree, and speculative decoding of MT-bench first turns — alternating
round by round, outputs required equal. Prints markdown tables (median and range).

    python benchmarks/draft_layer.py --target runs/target --draft runs/mini/draft07s2/best --tree 4/2/1
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from cpu_step import decoder_models, mt_bench_prompt, tree_parser
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.bench.runner import lay_out_for_cpu
from eagle3cli.decoding import DecodingConfig, speculative_generate
from eagle3cli.decoding.generate import draft_step_tree, extend_context
from eagle3cli.decoding.layout import cpu_linears
from eagle3cli.decoding.state import draft_forward
from eagle3cli.draft.model import DraftDecoderLayer
from eagle3cli.target.hub import load_tokenizer
from eagle3cli.target.loading import native_bf16


def table(title: str, times: dict[tuple[str, str], list[float]], unit: str) -> None:
    print(f"\n{title}\n\n| measure | draft layer | median {unit} | range |\n|---|---|---|---|")
    for (measure, name), values in times.items():
        print(f"| {measure} | {name} | {statistics.median(values):.3f} | {min(values):.3f}–{max(values):.3f} |")


@torch.inference_mode()
def main() -> None:
    parser = tree_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--questions", type=int, default=3, help="MT-bench first turns decoded per round")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    total_token, depth, top_k = (int(value) for value in args.tree.split("/"))
    target, trained = decoder_models(args.target, args.draft)
    fused = copy.deepcopy(trained)
    fused.embed_tokens = trained.embed_tokens  # shared with the target, as in the bench
    lay_out_for_cpu(target, fused)  # as eagle3 bench: the draft's layer fused, its linears packed
    cpu_linears(trained, bf16=native_bf16(torch.device("cpu")))  # the same packing, the layer as trained
    assert isinstance(trained.midlayer, DraftDecoderLayer)
    drafts = {"as trained": trained, "fused": fused}
    tokenizer = load_tokenizer(str(args.target))
    questions = read_question_file(bundled_question_file("mt_bench"))
    config = DecodingConfig(total_token=total_token, depth=depth, top_k=top_k, max_new_tokens=args.max_new_tokens,
                            stop_token_ids=(tokenizer.eos_token_id,))
    first = mt_bench_prompt(tokenizer, questions[0])
    states = {name: extend_context(target, draft, first, config)[0] for name, draft in drafts.items()}
    times: dict[tuple[str, str], list[float]] = {}
    speeds: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds + 1):
        order = list(drafts.items()) if round_index % 2 else list(drafts.items())[::-1]
        outputs: dict[str, list] = {}
        for name, draft in order:
            state = states[name]
            cache, prefix = state.draft_cache, state.draft_cache.length
            results = []
            for rows in (1, 2, 4):
                tokens, hidden = state.tokens[None, -rows:], state.draft_hidden.expand(1, rows, -1)
                mask = torch.ones(1, 1, rows, prefix + rows, dtype=torch.bool)
                started = time.perf_counter()
                results.append(draft_forward(draft, cache, tokens, hidden, torch.full((1, rows), prefix), mask))
                elapsed = time.perf_counter() - started
                cache.truncate(prefix)
                if round_index:
                    times.setdefault((f"one layer pass, {rows} rows", name), []).append(elapsed * 1e3)
            started = time.perf_counter()
            tree = draft_step_tree(draft, state, config)[1]
            elapsed = time.perf_counter() - started
            results.append(tree.tokens)
            if round_index:
                times.setdefault((f"drafting a {args.tree} tree", name), []).append(elapsed * 1e3)
            answers, count = [], 0
            started = time.perf_counter()
            for question in questions[1 : 1 + args.questions]:
                answer = speculative_generate(target, draft, mt_bench_prompt(tokenizer, question), config)
                answers.append(answer.tokens.tolist())
                count += answer.stats.num_new_tokens
            if round_index:
                speeds.setdefault((f"speculative decoding, {args.tree}", name), []).append(count / (time.perf_counter() - started))
            outputs[name] = results + [answers]
        for expected, got in zip(outputs["as trained"], outputs["fused"]):
            assert expected == got if isinstance(expected, list) else torch.equal(expected, got)
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    table("draft work (ms):", times, "ms")
    table(f"MT-bench questions 82-{81 + args.questions}, first turns, ≤ {args.max_new_tokens} tokens (tok/s):", speeds, "tok/s")


if __name__ == "__main__":
    main()
