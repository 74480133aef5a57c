"""Weight layouts for CPU decoding (``decoding.layout``): row-major, column-major, packed for oneDNN.

On a real target (SmolLM2-135M-Instruct) and a draft, both loaded once per layout in
``--layouts`` — ``row`` as stored (``[out, in]``), ``column`` re-laid column-major, ``packed``
reordered for oneDNN's packed products (what ``eagle3 bench`` does) — and per dtype in
``--dtypes`` (float32; bfloat16 as ``eagle3 bench --dtype bfloat16`` runs, target and draft
alike), alternating round by round:

1. one weight-matrix product (the linear as that layout lays it) for several row counts
   (the target's MLP and ``lm_head`` shapes, the draft head);
2. target forwards decode(1) and verify(N) over a drafted tree, one draft tree, one whole
   speculative step (after one MT-bench prompt);
3. whole greedy generations on MT-bench first turns, plain and speculative, with tok/s, τ
   and speed-up per variant, and how many answers are token-identical within each variant
   (speculative against plain) and across the variants.

    python benchmarks/weight_layout.py --target runs/fp8/target --draft runs/curve/tau-vs-data/n1440/best --layouts column packed
    python benchmarks/weight_layout.py --target runs/target --draft runs/mini/draft/best --layouts packed --dtypes float32 bfloat16
"""

from __future__ import annotations

import functools
import statistics

import torch

from cpu_step import LAYOUTS, alternating_generations, decode_one, drafting, generation_parser, load_models, medians, mt_bench_prompt, row, verify_tree
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import extend_context, speculative_step
from eagle3cli.decoding.target import HFTarget
from eagle3cli.target.hub import load_tokenizer

TREE = DecodingConfig(total_token=16, depth=3, top_k=4)
CHAIN = DecodingConfig(total_token=4, depth=2, top_k=1)  # what --total-token auto chose for the drafts trained here


def variant_name(layout: str, dtype: torch.dtype, variants: list[tuple[str, torch.dtype]]) -> str:
    """The layout, and the dtype when the run compares several."""
    return layout if len({dtype for _, dtype in variants}) == 1 else f"{layout} {str(dtype).removeprefix('torch.')}"


def relaid_product(linear: torch.nn.Linear, layout: str) -> torch.nn.Module:
    """``linear`` laid out as ``LAYOUTS[layout]`` lays a model's linears (what the forwards below run)."""
    owner = torch.nn.Sequential(linear)
    LAYOUTS[layout](owner)
    return owner[0]


def products(model_config, draft_vocab: int, rounds: int, variants: list[tuple[str, torch.dtype]]) -> None:
    hidden = model_config.hidden_size
    shapes = {"attention q/o": (hidden, hidden), "MLP up": (model_config.intermediate_size, hidden),
              "MLP down": (hidden, model_config.intermediate_size), "target lm_head": (model_config.vocab_size, hidden),
              "draft head": (draft_vocab, hidden)}
    names = [variant_name(*variant, variants) for variant in variants]
    print(f"| product | rows | {' | '.join(f'{name} ms' for name in names)} | {names[-1]} / {names[0]} |")
    print("|---|---|" + "---|" * (len(variants) + 1))
    for name, (out_features, in_features) in shapes.items():
        operators = [relaid_product(torch.nn.Linear(in_features, out_features, bias=False).to(dtype).eval(), layout)
                     for layout, dtype in variants]
        for rows in (1, 4, 16, 60, 256):
            x = {dtype: torch.randn(1, rows, in_features).to(dtype) for _, dtype in variants}
            figures = medians({name: functools.partial(operator, x[dtype])
                               for name, operator, (_, dtype) in zip(names, operators, variants)}, rounds)
            times = [figures[name][0] for name in names]
            cells = " | ".join(f"{value * 1e3:.2f}" for value in times)
            print(f"| {name} {out_features} x {in_features} | {rows} | {cells} | {times[-1] / times[0]:.2f} |")


def forwards(models: dict[str, tuple[HFTarget, torch.nn.Module]], prompt: torch.Tensor, rounds: int) -> None:
    functions = {}
    for layout, (target, draft) in models.items():
        state, _ = extend_context(target, draft, prompt, DecodingConfig(total_token=60, depth=5, top_k=10))
        functions.update({
            f"decode(1) {layout}": decode_one(target, state),
            f"verify(16) {layout}": verify_tree(target, draft, state, TREE),
            f"verify(60) {layout}": verify_tree(target, draft, state, DecodingConfig(total_token=60, depth=5, top_k=10)),
            f"draft tree 16/3/4 {layout}": drafting(draft, state, TREE),
            f"step 16/3/4 {layout}": lambda target=target, draft=draft, state=state: speculative_step(
                target, draft, state.clone(), TREE, 0),
            f"verify(4) {layout}": verify_tree(target, draft, state, CHAIN),
            f"step 4/2/1 {layout}": lambda target=target, draft=draft, state=state: speculative_step(
                target, draft, state.clone(), CHAIN, 0),
            f"state.clone() {layout}": state.clone,  # each step row runs on a copy: subtracted below
        })
    figures = medians(functions, rounds)
    print("\n| forward (after one MT-bench prompt) | median ms | range ms |\n|---|---|---|")
    for name, values in figures.items():
        print(row(name, values))
    print("\n| step, net of its state.clone() | median ms | / decode(1) |\n|---|---|---|")
    for layout in models:
        clone, decode = figures[f"state.clone() {layout}"][0], figures[f"decode(1) {layout}"][0]
        for tree in ("16/3/4", "4/2/1"):
            net = figures[f"step {tree} {layout}"][0] - clone
            print(f"| step {tree} {layout} | {net * 1e3:.1f} | {net / decode:.2f} |")


def generations(models, tokenizer, num_questions: int, max_new_tokens: int) -> None:
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=max_new_tokens)
    rates, answers, accepted = alternating_generations(models, tokenizer, num_questions, config)
    layouts = list(models)
    exact = {layout: sum(outputs[("speculative", layout)] == outputs[("plain", layout)] for outputs in answers) for layout in layouts}
    same = sum(len({tuple(outputs[("plain", layout)]) for layout in layouts}) == 1 for outputs in answers)
    print(f"\n| {num_questions} MT-bench first turns, ≤ {max_new_tokens} tokens, 16/3/4 | layout | tok/s median | range |\n|---|---|---|---|")
    for (mode, layout), values in sorted(rates.items()):
        print(f"| {mode} | {layout} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} |")
    print("\n| layout | τ | speed-up per question: median | range |\n|---|---|---|---|")
    for layout in layouts:
        ratios = [a / b for a, b in zip(rates[("speculative", layout)], rates[("plain", layout)])]
        tau = statistics.mean(accepted[layout])
        print(f"| {layout} | {tau:.2f} | {statistics.median(ratios):.2f}x | {min(ratios):.2f}–{max(ratios):.2f} |")
    for layout in layouts:
        print(f"\n{layout}: speculative answers token-identical to plain: {exact[layout]} of {num_questions}")
    print(f"plain answers token-identical across variants: {same} of {num_questions}")


@torch.inference_mode()
def main() -> None:
    parser = generation_parser(__doc__)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=["column", "packed"])
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=["float32"])
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(args.target))
    variants = [(layout, getattr(torch, dtype)) for dtype in args.dtypes for layout in args.layouts]
    models = {}
    for layout, dtype in variants:
        model, draft = load_models(args.target, args.draft, layout, dtype)
        models[variant_name(layout, dtype, variants)] = (HFTarget(model, draft.config.aux_layer_ids), draft)
    target, draft = next(iter(models.values()))
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, draft vocab {draft.config.draft_vocab_size}\n")
    products(target.model.config, draft.config.draft_vocab_size, args.rounds, variants)
    forwards(models, mt_bench_prompt(tokenizer, read_question_file(bundled_question_file("mt_bench"))[0]), args.rounds)
    generations(models, tokenizer, args.questions, args.max_new_tokens)


if __name__ == "__main__":
    main()
