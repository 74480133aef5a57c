"""GPU check of the speculative decoder (never part of CI).

1. Correctness on CUDA: greedy speculative output equals greedy target output, float32,
   tiny random Qwen3 / Llama / HunYuan targets with random drafts (tree and chain).
2. Speed on a Qwen3-8B-shaped random bf16 target (36 layers, hidden 4096, vocab 151936) and an
   8B-shaped draft (draft vocab 32000), after a 512-token prompt:
   - decode(1): one target forward of one token on the cache;
   - verify(60): one target forward of a real 60-node draft tree under its tree mask;
   - draft tree: drafting a whole tree (depth expansions), and per depth step;
   - tokens/s: baseline decoding, and speculative decoding at a synthetic acceptance τ
     (the measured time of a full speculative step with τ assumed; random weights accept
     nothing, so real τ here is 1).
Goals: verify(60) <= 1.15 x decode(1); one draft depth step <= 5% of a target step; the
baseline loop >= 90 % of 1 / decode(1).

With ``--compile`` the speed figures are measured twice, the second time with the target's
one-token and tree forwards compiled over a static cache (``StaticTarget(compile=True)``) and
each draft level compiled (``DecodingConfig(compile_draft=True)``) — what ``eagle3 bench
--compile`` runs, CUDA graphs on CUDA — and correctness adds that pair on the Qwen3 family; the first calls of each shape (compilation, graph capture) are left out
of the medians.

Run: PYTHONPATH=src python benchmarks/gpu_decoder.py [--small] [--compile] [--out results.json]
(--small runs the same code on CPU-sized models for a quick check.)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time

import torch
from transformers import (
    HunYuanDenseV1Config,
    HunYuanDenseV1ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from eagle3cli.decoding import DecodingConfig, baseline_generate, speculative_generate
from eagle3cli.decoding.generate import draft_step_tree, extend_context, speculative_step, tree_inputs
from eagle3cli.decoding.state import DecodingState
from eagle3cli.decoding.target import HFTarget, StaticTarget
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.model import Eagle3DraftModel

FAMILIES = {
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "hunyuan": (HunYuanDenseV1Config, HunYuanDenseV1ForCausalLM),
}


def target_shape(small: bool) -> dict:
    if small:
        return dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=32, vocab_size=4096)
    return dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936)


def build_target(family: str, shape: dict, device: str, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_class(**shape, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False)
    with torch.device(device):
        model = model_class(config).to(dtype)
    return model.eval()


def build_draft(target: torch.nn.Module, draft_vocab: int, aux_layer_ids: tuple[int, int, int], seed: int = 1) -> Eagle3DraftModel:
    config = target.config
    torch.manual_seed(seed)
    draft_config = DraftConfig(
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=4096,
        vocab_size=config.vocab_size, draft_vocab_size=draft_vocab, target_hidden_size=config.hidden_size,
        aux_layer_ids=aux_layer_ids,
    )
    weight = next(target.parameters())
    with torch.device(weight.device):
        draft = Eagle3DraftModel(draft_config)
    target_ids = torch.randperm(config.vocab_size, device=weight.device)[:draft_vocab].sort().values
    d2t = target_ids - torch.arange(draft_vocab, device=weight.device)
    t2d = torch.zeros(config.vocab_size, dtype=torch.bool, device=weight.device)
    t2d[target_ids] = True
    draft.set_vocab_map(d2t, t2d)
    draft.embed_tokens = target.get_input_embeddings()
    return draft.to(weight.dtype).eval()


def correctness(device: str, compile: bool) -> dict:
    """Greedy speculative == greedy target, float32, three families, tree and chain (and the
    compiled static-cache target on Qwen3 with ``compile``)."""
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=512)
    results = {}
    for family in [*FAMILIES, *(["qwen3 compiled"] if compile else [])]:
        target_model = build_target(family.split()[0], shape, device, torch.float32)
        target = StaticTarget(target_model, (1, 2, 3), compile=True) if family.endswith("compiled") else HFTarget(target_model, (1, 2, 3))
        draft = build_draft(target_model, 256, (1, 2, 3))
        checks = []
        for seed in range(4):
            prompt = torch.randint(0, 512, (12 + seed,), generator=torch.Generator().manual_seed(seed)).to(device)
            for top_k, total in ((10, 60), (1, 6)):
                config = DecodingConfig(total_token=total, depth=5, top_k=top_k, temperature=0, max_new_tokens=48,
                                        compile_draft=family.endswith("compiled"))
                spec = speculative_generate(target, draft, prompt, config).tokens
                base = baseline_generate(target, prompt, config).tokens
                checks.append(bool(torch.equal(spec, base)))
        results[family] = f"{sum(checks)}/{len(checks)} equal"
    return results


def timed(function, device: str):
    """``(function(), seconds)``, the device's queued work included."""
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = function()
    if device == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def median_seconds(function, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats + 3):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times[3:])


def branch(state: DecodingState) -> DecodingState:
    """``state`` with its own draft cache and the same target cache (crop that back to the
    state's length after use): a step measured again and again from one state."""
    return dataclasses.replace(state, draft_cache=copy.deepcopy(state.draft_cache))


@torch.inference_mode()
def speed(device: str, small: bool, compile: bool) -> dict:
    shape = target_shape(small)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    target_model = build_target("qwen3", shape, device, dtype)
    layers = shape["num_hidden_layers"]
    aux = (2, layers // 2, layers - 3)
    target = StaticTarget(target_model, aux, compile=True) if compile else HFTarget(target_model, aux)
    draft = build_draft(target_model, min(32000, shape["vocab_size"] // 2), aux)
    config = DecodingConfig(total_token=60, depth=5, top_k=10, temperature=0, max_new_tokens=128, compile_draft=compile)
    prompt = torch.randint(0, shape["vocab_size"], (512,), generator=torch.Generator().manual_seed(0)).to(device)
    state, _ = extend_context(target, draft, prompt, config)
    prefix = state.cached_length
    one = state.tokens[-1:][None]

    def decode_one() -> None:
        out = target.forward(one, torch.tensor([[prefix]], device=device), None, state.target_cache)
        target.crop(out.cache, prefix)

    _, tree = draft_step_tree(draft, state, config)
    tree_positions, tree_mask = tree_inputs(tree, prefix)

    def verify_tree() -> None:
        out = target.forward(tree.tokens[None], tree_positions, tree_mask, state.target_cache)
        target.crop(out.cache, prefix)

    def draft_whole_tree() -> None:
        draft_step_tree(draft, state, config)

    decode_s = median_seconds(decode_one, 20, device)
    verify_s = median_seconds(verify_tree, 20, device)
    draft_s = median_seconds(draft_whole_tree, 20, device)

    def step() -> None:
        speculative_step(target, draft, branch(state), config, 0)
        target.crop(state.target_cache, prefix)

    step_s = median_seconds(step, 10, device)

    baseline_generate(target, prompt, config)  # first calls: a compiled target's graphs for a new cache size
    base, base_s = timed(lambda: baseline_generate(target, prompt, config), device)
    base_tps = base.stats.num_new_tokens / base_s
    speculative_generate(target, draft, prompt, config)
    spec, spec_s = timed(lambda: speculative_generate(target, draft, prompt, config), device)
    return {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "target": "compiled, static cache" if compile else "eager, preallocated cache",
        "dtype": str(dtype), "target_shape": shape, "prompt_tokens": 512, "tree_nodes": tree.num_nodes,
        "decode_1_ms": decode_s * 1e3, "verify_60_ms": verify_s * 1e3, "verify_over_decode": verify_s / decode_s,
        "draft_tree_ms": draft_s * 1e3, "draft_depth_step_ms": draft_s / config.num_draft_levels * 1e3,
        "draft_depth_step_over_target_step": draft_s / config.num_draft_levels / decode_s,
        "speculative_step_ms": step_s * 1e3,
        "baseline_tokens_per_s": base_tps,
        "baseline_loop_over_bare_decode": base_tps * decode_s,
        "speculative_random_draft_tokens_per_s": spec.stats.num_new_tokens / spec_s,
        "speculative_random_draft_tau": spec.stats.mean_accept_length,
        "synthetic_tokens_per_s": {f"tau={tau}": tau / step_s for tau in (2.0, 3.0, 4.0, 5.0)},
        "synthetic_speedup": {f"tau={tau}": tau / step_s / base_tps for tau in (2.0, 3.0, 4.0, 5.0)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized target (a smoke run of this script)")
    parser.add_argument("--compile", action="store_true", help="measure the compiled static-cache target too")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {"correctness": correctness(device, args.compile)}
    print(json.dumps(results, indent=2), flush=True)
    for key, compile in (("speed", False), ("speed_compiled", True))[: 1 + args.compile]:
        results[key] = speed(device, args.small, compile)
        print(json.dumps(results[key], indent=2), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
