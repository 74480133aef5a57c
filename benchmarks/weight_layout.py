"""Row-major against column-major weight matrices for CPU decoding (``decoding.layout``).

On a real target (SmolLM2-135M-Instruct, float32) and a draft, both loaded twice — as stored
(row-major ``[out, in]``) and re-laid column-major — alternating round by round:

1. one weight-matrix product ``F.linear`` for several row counts (the target's MLP and
   ``lm_head`` shapes, the draft head);
2. target forwards decode(1) and verify(N) over a drafted tree, one draft tree, one whole
   speculative step (after one MT-bench prompt);
3. whole greedy generations on MT-bench first turns, plain and speculative, with tok/s, τ
   and speed-up per layout, and how many answers are token-identical across the layouts.

    python benchmarks/weight_layout.py --target runs/fp8/target --draft runs/curve/tau-vs-data/n1440/best
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from cpu_step import alternating_generations, generation_parser, medians, row
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.chat_template import render_generation_prompt
from eagle3cli.data.records import Turn
from eagle3cli.decoding import DecodingConfig
from eagle3cli.decoding.generate import extend_context, speculative_step
from eagle3cli.decoding.layout import column_major_linears
from eagle3cli.decoding.state import reserve
from eagle3cli.decoding.target import HFTarget
from eagle3cli.decoding.tree import draft_tree, tree_attention_mask, tree_cache_capacity
from eagle3cli.draft.checkpoint import load_checkpoint
from eagle3cli.target.hub import load_tokenizer
from eagle3cli.target.loading import load_pretrained

LAYOUTS = ("row", "column")
TREE = DecodingConfig(total_token=16, depth=3, top_k=4)


def load(target_dir: Path, draft_dir: Path, layout: str) -> tuple[HFTarget, torch.nn.Module]:
    model = load_pretrained(target_dir, dtype=torch.float32, device_map="cpu")
    embedding = model.get_input_embeddings()
    draft = load_checkpoint(draft_dir, embed_tokens=embedding.weight.detach()).eval()
    draft.embed_tokens = embedding
    if layout == "column":
        column_major_linears(model)
        column_major_linears(draft)
    return HFTarget(model, draft.config.aux_layer_ids), draft


def products(model_config, draft_vocab: int, rounds: int) -> None:
    hidden = model_config.hidden_size
    shapes = {"MLP up": (model_config.intermediate_size, hidden), "MLP down": (hidden, model_config.intermediate_size),
              "target lm_head": (model_config.vocab_size, hidden), "draft head": (draft_vocab, hidden)}
    print("| product | rows | row-major ms | column-major ms | ratio |\n|---|---|---|---|---|")
    for name, (out_features, in_features) in shapes.items():
        weight = torch.randn(out_features, in_features)
        column = weight.t().contiguous().t()
        for rows in (1, 4, 16, 60, 256):
            x = torch.randn(1, rows, in_features)
            figures = medians({"row": lambda: F.linear(x, weight), "column": lambda: F.linear(x, column)}, rounds)
            a, b = figures["row"][0], figures["column"][0]
            print(f"| {name} {out_features} x {in_features} | {rows} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f} |")


def forwards(models: dict[str, tuple[HFTarget, torch.nn.Module]], prompt: torch.Tensor, rounds: int) -> None:
    functions = {}
    for layout, (target, draft) in models.items():
        state, _ = extend_context(target, draft, prompt, DecodingConfig(total_token=60, depth=5, top_k=10))
        prefix = state.cached_length
        one = state.tokens[-1:][None]

        def verify(config: DecodingConfig, target=target, draft=draft, state=state, prefix=prefix):
            cache = reserve(state.draft_cache, prefix + tree_cache_capacity(config) + config.max_step_tokens)
            tree = draft_tree(draft, cache, state.draft_hidden, state.tokens[-1], config)
            mask, positions = tree_attention_mask(tree.mask, prefix), (prefix + tree.depths)[None]
            return lambda: target.crop(target.forward(tree.tokens[None], positions, mask, state.target_cache).cache, prefix)

        cache = reserve(state.draft_cache, prefix + tree_cache_capacity(TREE) + TREE.max_step_tokens)
        functions.update({
            f"decode(1) {layout}": lambda target=target, state=state, one=one, prefix=prefix: target.crop(
                target.forward(one, torch.tensor([[prefix]]), None, state.target_cache, last_logits_only=True).cache, prefix),
            f"verify(16) {layout}": verify(TREE),
            f"verify(60) {layout}": verify(DecodingConfig(total_token=60, depth=5, top_k=10)),
            f"draft tree 16/3/4 {layout}": lambda draft=draft, state=state, cache=cache: draft_tree(
                draft, cache, state.draft_hidden, state.tokens[-1], TREE),
            f"step 16/3/4 {layout}": lambda target=target, draft=draft, state=state: speculative_step(
                target, draft, state.clone(), TREE, 0),
        })
    figures = medians(functions, rounds)
    print("\n| forward (after one MT-bench prompt) | median ms | range ms |\n|---|---|---|")
    for name, values in figures.items():
        print(row(name, values))


def generations(models, tokenizer, num_questions: int, max_new_tokens: int) -> None:
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=max_new_tokens)
    rates, answers, accepted = alternating_generations(models, tokenizer, num_questions, config)
    for index, outputs in enumerate(answers, 1):
        for layout in LAYOUTS:
            assert outputs[("speculative", layout)] == outputs[("plain", layout)], f"{layout}: speculative != plain on question {index}"
    same = sum(outputs[("plain", "row")] == outputs[("plain", "column")] for outputs in answers)
    print(f"\n| {num_questions} MT-bench first turns, ≤ {max_new_tokens} tokens, 16/3/4 | layout | tok/s median | range |\n|---|---|---|---|")
    for (mode, layout), values in sorted(rates.items()):
        print(f"| {mode} | {layout} | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} |")
    print("\n| layout | τ | speed-up per question: median | range |\n|---|---|---|---|")
    for layout in LAYOUTS:
        ratios = [a / b for a, b in zip(rates[("speculative", layout)], rates[("plain", layout)])]
        tau = statistics.mean(accepted[layout])
        print(f"| {layout} | {tau:.2f} | {statistics.median(ratios):.2f}x | {min(ratios):.2f}–{max(ratios):.2f} |")
    print(f"\nplain answers token-identical across layouts: {same} of {num_questions}")


@torch.inference_mode()
def main() -> None:
    args = generation_parser(__doc__).parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(args.target))
    models = {layout: load(args.target, args.draft, layout) for layout in LAYOUTS}
    target, draft = models["row"]
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, draft vocab {draft.config.draft_vocab_size}\n")
    products(target.model.config, draft.config.draft_vocab_size, args.rounds)
    question = read_question_file(bundled_question_file("mt_bench"))[0]
    prompt = torch.tensor(render_generation_prompt(tokenizer, [Turn("user", question.turns[0])], template="auto"))
    forwards(models, prompt, args.rounds)
    generations(models, tokenizer, args.questions, args.max_new_tokens)


if __name__ == "__main__":
    main()
