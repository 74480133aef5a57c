"""What ``torch.compile`` would buy the CPU decoder: the target's forwards eager against compiled.

On a real target (SmolLM2-135M-Instruct, float32) and a draft, after one MT-bench prompt, three
ways to run the same target forwards:

- ``preallocated``: what ``eagle3 bench`` runs today — eager, linears packed for oneDNN, the
  decoder's preallocated cache (attention over the cached positions only);
- ``static``: eager, packed, transformers' ``StaticCache`` (the static shapes a compiled graph
  needs: attention reads every position, masked past the length);
- ``compiled``: ``StaticCache`` and ``torch.compile`` (inductor, ``freezing``: the weights become
  constants, packed for oneDNN by inductor itself; the capture layers read from
  ``output_hidden_states``, since hooks re-registered per call would recompile).

It prints decode(1) and verify(16) (a drafted 16/3/4 tree) medians over alternating rounds,
then plain greedy decoding of ``--max-new-tokens`` tokens with each, and checks the compiled
forwards pick the eager argmax and the decoded tokens are identical.

    python benchmarks/cpu_compile.py --target runs/target --draft runs/mini/draft07/best
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import StaticCache

from cpu_step import decode_one, load_models, medians, mt_bench_prompt, row, verify_tree
from eagle3cli.bench.questions import bundled_question_file, read_question_file
from eagle3cli.decoding import DecodingConfig, baseline_generate
from eagle3cli.decoding.generate import extend_context
from eagle3cli.decoding.state import TargetOutput
from eagle3cli.decoding.target import HFTarget, additive_mask
from eagle3cli.target.hub import load_tokenizer
from eagle3cli.target.loading import load_pretrained


class StaticTarget(HFTarget):
    """The decoder's adapter over a ``StaticCache`` of ``max_length`` positions (allocated at the
    prefill; crop moves its length back); the tree mask is padded to that width. ``forward``
    is the model's (eager, or compiled) and the capture layers come from its hidden states."""

    def __init__(self, model, aux_layer_ids, max_length: int, forward=None) -> None:
        super().__init__(model, aux_layer_ids, preallocated=False)
        self.max_length = max_length
        self.model_forward = forward or model.forward

    def forward(self, input_ids, position_ids, mask, cache, *, last_logits_only=False) -> TargetOutput:
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=self.max_length)
        if mask is not None:
            mask = additive_mask(torch.nn.functional.pad(mask, (0, self.max_length - mask.shape[-1]), value=False), self.dtype)
        out = self.model_forward(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, past_key_values=cache,
                                 use_cache=True, output_hidden_states=True, logits_to_keep=1 if last_logits_only else 0)
        aux = torch.cat([out.hidden_states[k] for k in self.aux_layer_ids], dim=-1)
        return TargetOutput(out.logits, aux, cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--draft", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    packed, draft = load_models(args.target, args.draft, "packed")
    tokenizer = load_tokenizer(str(args.target))
    prompt = mt_bench_prompt(tokenizer, read_question_file(bundled_question_file("mt_bench"))[0])
    max_length = prompt.numel() + args.max_new_tokens + 64  # the answer, a 16-node tree and its accepted tokens
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    plain = load_pretrained(args.target, dtype=torch.float32, device_map="cpu")
    compiled = torch.compile(plain.forward)
    aux = draft.config.aux_layer_ids
    targets = {"preallocated": HFTarget(packed, aux), "static": StaticTarget(packed, aux, max_length),
               "compiled": StaticTarget(plain, aux, max_length, compiled)}
    config = DecodingConfig(total_token=16, depth=3, top_k=4, max_new_tokens=args.max_new_tokens)
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, prompt {prompt.numel()} tokens, static cache {max_length} positions\n")
    with torch.inference_mode():
        started = time.perf_counter()
        states = {name: extend_context(target, draft, prompt, config)[0] for name, target in targets.items()}
        functions = {}
        for name, target in targets.items():
            functions[f"decode(1) {name}"] = decode_one(target, states[name])
            functions[f"verify(16) {name}"] = verify_tree(target, draft, states[name], config)
        for function in functions.values():
            function()  # compiles the compiled forwards' shapes (prefill, decode, verify)
        print(f"first calls, compilation included: {time.perf_counter() - started:.0f} s\n")
        check_logits(targets, states, draft, config)
        figures = medians(functions, args.rounds)
        print("| target forward | median ms | range ms | / preallocated\n|---|---|---|---|")
        for name, values in figures.items():
            print(row(name, values, figures[name.split()[0] + " preallocated"][0]))
        loop_config = DecodingConfig(max_new_tokens=args.max_new_tokens)  # no stop tokens: always that many
        answers = {name: baseline_generate(target, prompt, loop_config).tokens.tolist() for name, target in targets.items()}
        assert all(tokens == answers["preallocated"] for tokens in answers.values()), "plain decoding differs between the variants"
        figures = medians({name: (lambda target=target: baseline_generate(target, prompt, loop_config)) for name, target in targets.items()},
                          max(1, args.rounds // 3))
        print(f"\n| plain greedy decoding, {args.max_new_tokens} tokens | median ms | range ms | / preallocated\n|---|---|---|---|")
        for name, values in figures.items():
            print(row(name, values, figures["preallocated"][0]) + f" | {args.max_new_tokens / values[0]:.1f} tok/s")
        print("\nall variants decoded the same tokens")


def check_logits(targets, states, draft, config) -> None:
    """decode(1) and verify(16) of every variant pick the preallocated forwards' argmax."""
    from eagle3cli.decoding.generate import draft_step_tree, tree_inputs

    reference = states["preallocated"]
    _, tree = draft_step_tree(draft, reference, config)
    one = reference.tokens[-1:][None]
    picks = {}
    for name, target in targets.items():
        state, prefix = states[name], states[name].cached_length
        decode = target.forward(one, torch.tensor([[prefix]]), None, state.target_cache, last_logits_only=True).logits
        target.crop(state.target_cache, prefix)
        verify = target.forward(tree.tokens[None], *tree_inputs(tree, prefix), state.target_cache).logits
        target.crop(state.target_cache, prefix)
        picks[name] = (decode[0, -1].argmax().item(), verify[0].argmax(-1).tolist())
    assert all(pick == picks["preallocated"] for pick in picks.values()), f"argmax differs: {picks}"


if __name__ == "__main__":
    main()
