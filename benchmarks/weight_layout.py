"""Weight layouts for CPU decoding (``decoding.layout``): row-major, column-major, packed for oneDNN.

On a real target (SmolLM2-135M-Instruct, float32) and a draft, both loaded once per layout in
``--layouts`` — ``row`` as stored (``[out, in]``), ``column`` re-laid column-major, ``packed``
reordered for oneDNN's packed products (what ``eagle3 bench`` does) — alternating round by round:

1. one weight-matrix product ``F.linear`` for several row counts (the target's MLP and
   ``lm_head`` shapes, the draft head);
2. target forwards decode(1) and verify(N) over a drafted tree, one draft tree, one whole
   speculative step (after one MT-bench prompt);
3. whole greedy generations on MT-bench first turns, plain and speculative, with tok/s, τ
   and speed-up per layout, and how many answers are token-identical across the layouts.

    python benchmarks/weight_layout.py --target runs/fp8/target --draft runs/curve/tau-vs-data/n1440/best --layouts column packed
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from cpu_step import LAYOUTS, alternating_generations, decode_one, drafting, generation_parser, load_models, medians, mt_bench_prompt, row, verify_tree
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import extend_context, speculative_step
from eagle3cli.decoding.layout import PackedLinear
from eagle3cli.decoding.target import HFTarget
from eagle3cli.target.hub import load_tokenizer

TREE = DecodingConfig(total_token=16, depth=3, top_k=4)
CHAIN = DecodingConfig(total_token=4, depth=2, top_k=1)  # what --total-token auto chose for the drafts trained here


def products(model_config, draft_vocab: int, rounds: int, layouts: list[str]) -> None:
    hidden = model_config.hidden_size
    shapes = {"attention q/o": (hidden, hidden), "MLP up": (model_config.intermediate_size, hidden),
              "MLP down": (hidden, model_config.intermediate_size), "target lm_head": (model_config.vocab_size, hidden),
              "draft head": (draft_vocab, hidden)}
    print(f"| product | rows | {' | '.join(f'{layout} ms' for layout in layouts)} | {layouts[-1]} / {layouts[0]} |")
    print("|---|---|" + "---|" * (len(layouts) + 1))
    for name, (out_features, in_features) in shapes.items():
        linear = torch.nn.Linear(in_features, out_features, bias=False).eval()
        weight = linear.weight.detach()
        column, packed = weight.t().contiguous().t(), PackedLinear(linear) if "packed" in layouts else None
        for rows in (1, 4, 16, 60, 256):
            x = torch.randn(1, rows, in_features)
            product_in = {"row": lambda: F.linear(x, weight), "column": lambda: F.linear(x, column), "packed": lambda: packed(x)}
            figures = medians({layout: product_in[layout] for layout in layouts}, rounds)
            times = [figures[layout][0] for layout in layouts]
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
        })
    figures = medians(functions, rounds)
    print("\n| forward (after one MT-bench prompt) | median ms | range ms |\n|---|---|---|")
    for name, values in figures.items():
        print(row(name, values))


def generations(models, tokenizer, num_questions: int, max_new_tokens: int) -> None:
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=max_new_tokens)
    rates, answers, accepted = alternating_generations(models, tokenizer, num_questions, config)
    layouts = list(models)
    for index, outputs in enumerate(answers, 1):
        for layout in layouts:
            assert outputs[("speculative", layout)] == outputs[("plain", layout)], f"{layout}: speculative != plain on question {index}"
    same = sum(len({tuple(outputs[("plain", layout)]) for layout in layouts}) == 1 for outputs in answers)
    print(f"\n| {num_questions} MT-bench first turns, ≤ {max_new_tokens} tokens, 16/3/4 | layout | tok/s median | range |\n|---|---|---|---|")
    for (mode, layout), values in sorted(rates.items()):
        print(f"| {mode} | {layout} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} |")
    print("\n| layout | τ | speed-up per question: median | range |\n|---|---|---|---|")
    for layout in layouts:
        ratios = [a / b for a, b in zip(rates[("speculative", layout)], rates[("plain", layout)])]
        tau = statistics.mean(accepted[layout])
        print(f"| {layout} | {tau:.2f} | {statistics.median(ratios):.2f}x | {min(ratios):.2f}–{max(ratios):.2f} |")
    print(f"\nplain answers token-identical across layouts: {same} of {num_questions}")


@torch.inference_mode()
def main() -> None:
    parser = generation_parser(__doc__)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=["column", "packed"])
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(args.target))
    models = {}
    for layout in args.layouts:
        model, draft = load_models(args.target, args.draft, layout)
        models[layout] = (HFTarget(model, draft.config.aux_layer_ids), draft)
    target, draft = models[args.layouts[0]]
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, draft vocab {draft.config.draft_vocab_size}\n")
    products(target.model.config, draft.config.draft_vocab_size, args.rounds, args.layouts)
    forwards(models, mt_bench_prompt(tokenizer, read_question_file(bundled_question_file("mt_bench"))[0]), args.rounds)
    generations(models, tokenizer, args.questions, args.max_new_tokens)


if __name__ == "__main__":
    main()
