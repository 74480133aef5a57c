"""Drafts saved by the project, verified inside the real vLLM (CPU build): the compatibility test.

vLLM loads a draft without ``d2t`` (or with a wrong one) silently and just accepts nothing,
so loading proves little: this test asserts acceptance. The target follows a known token
cycle and the draft predicts it exactly (construction in ``builders/cycle_models.py``), with
a draft vocabulary whose every ``d2t`` offset is non-zero. vLLM greedy with and without the
draft must give the same tokens — the cycle's — with acceptance >= 0.9; the same draft with
``d2t`` zeroed must accept (almost) nothing. Three engines per family start side by side.
The draft's predictions are first checked in the project's own draft forward (fast).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from builders.training import torchrun_eagle3, write_cycle_data
from builders.cycle_models import CycleFamily, CycleTarget, build_cycle_draft, save_cycle_drafts, save_cycle_target, with_fc_norm
from eagle3cli.draft.checkpoint import load_checkpoint, save_draft_model
from eagle3cli.bench.vllm_engine import SpecCounters, VllmEngine
from eagle3cli.draft.checkpoint import inspect_checkpoint
from eagle3cli.draft.convert import convert_draft
from eagle3cli.target.spec import read_target_config
from vllm_env import vllm_python  # noqa: F401
from vllm_offline import offline_engine

NUM_SPECULATIVE_TOKENS = 3
MAX_TOKENS = 48
GREEDY = {"temperature": 0.0, "max_tokens": MAX_TOKENS, "ignore_eos": True, "detokenize": False}


def prompts_for(target: CycleTarget) -> list[list[int]]:
    """Prompts ending in a cycle token, in a token outside the cycle (a multiple of 4), and a longer one."""
    cycle = target.cycle_ids.tolist()
    generator = torch.Generator().manual_seed(1)
    longer = cycle[:1] + torch.randint(3, len(target.next_token), (30,), generator=generator).tolist()
    return [cycle[5:9], [cycle[3], 8], longer]


def generate_all(engine: VllmEngine, prompts: list[list[int]]) -> tuple[list[list[int]], SpecCounters]:
    outputs, counters = [], SpecCounters()
    for prompt in prompts:
        generation = engine.generate(prompt, GREEDY)
        outputs.append(generation.token_ids)
        counters += generation.spec
    return outputs, counters


def run_alone(engine: VllmEngine, prompts: list[list[int]]) -> tuple[list[list[int]], SpecCounters]:
    """Start one engine, answer ``prompts``, close it."""
    with ExitStack() as stack:
        engine.start()
        stack.callback(engine.close)
        engine.wait_ready()
        return generate_all(engine, prompts)


def assert_vllm_accepts(vllm_python: str, target: CycleTarget, draft: Path, log: Path) -> None:
    """vLLM with ``draft`` gives the target's greedy cycle and accepts >= 0.9 at every position."""
    engine = offline_engine(vllm_python, target.directory, log, draft=draft, k=NUM_SPECULATIVE_TOKENS)
    prompts = prompts_for(target)
    outputs, drafted = run_alone(engine, prompts)
    assert outputs == [target.greedy_continuation(prompt[-1], MAX_TOKENS) for prompt in prompts]
    assert drafted.num_drafts > 0 and drafted.acceptance_rate >= 0.9 and min(drafted.acceptance_by_position) >= 0.9, drafted


def check_cycle_predictions(draft, target: CycleTarget, vocab_size: int) -> bool:
    """The project's own draft forward: step 0 from the fused states of ``t_i`` and the
    embedding of ``t_{i+1}``, later steps from the layer's own output and the last proposal."""
    tokens = torch.arange(vocab_size)  # every token as position i of its own sequence
    positions = torch.zeros(len(tokens), 1, dtype=torch.int64)
    next_token = target.next_token
    with torch.no_grad():
        hidden = draft.fuse(target.embeddings.repeat(1, 3)[:, None])  # [vocab, 1, H]: the 3 states are E[t_i]
        inputs, expected = next_token[tokens], next_token[next_token[tokens]]
        for _ in range(NUM_SPECULATIVE_TOKENS):
            hidden = draft.layer(draft.embed(inputs[:, None]), hidden, positions)
            proposals = draft.to_target_ids(draft.logits(hidden).argmax(-1))[:, 0]
            if not torch.equal(proposals, expected):
                return False
            inputs, expected = proposals, next_token[expected]
    return True


def test_the_crafted_draft_predicts_the_targets_cycle_at_every_step(
    tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase
) -> None:
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    draft = build_cycle_draft(target)
    assert check_cycle_predictions(draft, target, len(qwen3_tokenizer))
    normed = load_checkpoint(save_draft_model(tmp_path / "fc-norm", with_fc_norm(draft), save_embed=True))
    assert check_cycle_predictions(normed, target, len(qwen3_tokenizer))  # saved, read back, still exact
    normed.fc_norm = None  # a reader that ignored fc_norm
    assert not check_cycle_predictions(normed, target, len(qwen3_tokenizer))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_saved_draft_is_accepted_by_vllm_and_only_through_its_d2t_map(
    family: CycleFamily, vllm_python: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tokenizer: PreTrainedTokenizerBase = request.getfixturevalue(f"{family}_tokenizer")
    target = save_cycle_target(tmp_path / "target", family, tokenizer)
    draft, zero_d2t_draft = save_cycle_drafts(tmp_path, target)
    for checkpoint in (draft, zero_d2t_draft):
        assert inspect_checkpoint(checkpoint, target_config=read_target_config(target.directory)).problems == []
    d2t = load_file(draft / "model.safetensors")["d2t"]
    assert bool((d2t != 0).all()) and d2t.numel() < len(tokenizer)
    assert bool((load_file(zero_d2t_draft / "model.safetensors")["d2t"] == 0).all())

    engines = {
        "baseline": offline_engine(vllm_python, target.directory, tmp_path / "baseline.log"),
        "draft": offline_engine(vllm_python, target.directory, tmp_path / "draft.log", draft=draft, k=NUM_SPECULATIVE_TOKENS),
        "zero_d2t": offline_engine(vllm_python, target.directory, tmp_path / "zero.log", draft=zero_d2t_draft, k=NUM_SPECULATIVE_TOKENS),
    }
    prompts = prompts_for(target)
    results = {}
    with ExitStack() as stack:
        for engine in engines.values():  # load side by side
            engine.start()
            stack.callback(engine.close)
        for name, engine in engines.items():
            engine.wait_ready()
            results[name] = generate_all(engine, prompts)

    expected = [target.greedy_continuation(prompt[-1], MAX_TOKENS) for prompt in prompts]
    (baseline, no_drafts), (speculative, drafted), (zero_d2t, zero_drafted) = results.values()
    assert baseline == expected  # vLLM runs the crafted target as built
    assert no_drafts.num_drafts == 0
    assert speculative == baseline and zero_d2t == baseline  # speculative decoding is lossless either way
    assert drafted.num_drafts >= len(prompts) * MAX_TOKENS // (NUM_SPECULATIVE_TOKENS + 1) - len(prompts)
    assert drafted.num_draft_tokens == drafted.num_drafts * NUM_SPECULATIVE_TOKENS
    assert drafted.acceptance_rate >= 0.9, drafted
    assert min(drafted.acceptance_by_position) >= 0.9, drafted
    assert zero_drafted.num_drafts > 0 and zero_drafted.acceptance_rate <= 0.1, zero_drafted


@pytest.mark.slow
def test_a_draft_converted_to_speculators_is_accepted_by_vllm_and_converts_back_identical(
    vllm_python: str, tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase
) -> None:
    """The speculators layout (keys ``layers.0.*``, config nested under ``transformer_layer_config``)
    loaded by vLLM itself: the crafted draft keeps its acceptance, so nothing was lost or misread."""
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    draft = save_draft_model(tmp_path / "draft", build_cycle_draft(target))
    target_config = read_target_config(target.directory)
    speculators = convert_draft(draft, "speculators", tmp_path / "speculators", target_config=target_config,
                                target_name=str(target.directory)).output_dir
    back = convert_draft(speculators, "eagle3", tmp_path / "back").output_dir
    original, returned = load_file(draft / "model.safetensors"), load_file(back / "model.safetensors")
    assert original.keys() == returned.keys() and all(torch.equal(original[key], returned[key]) for key in original)
    assert_vllm_accepts(vllm_python, target, speculators, tmp_path / "speculators.log")


@pytest.mark.slow
def test_an_fc_norm_draft_is_accepted_by_vllm(vllm_python: str, tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase) -> None:
    """vLLM reads ``fc_norm`` from config.json and applies the norms as the project does (the
    construction fails without them: see the test above)."""
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    draft = save_draft_model(tmp_path / "draft", with_fc_norm(build_cycle_draft(target)))
    assert inspect_checkpoint(draft, target_config=read_target_config(target.directory)).problems == []
    assert_vllm_accepts(vllm_python, target, draft, tmp_path / "fc-norm.log")


@pytest.mark.slow
def test_a_draft_trained_under_fsdp_is_accepted_by_vllm(vllm_python: str, tmp_path: Path, qwen3_tokenizer: PreTrainedTokenizerBase) -> None:
    """Two CPU processes fine-tune the crafted draft with ``--fsdp`` (a small learning rate keeps
    its predictions): ``final/``, gathered from the shards, is a trained draft vLLM accepts."""
    target = save_cycle_target(tmp_path / "target", "qwen3", qwen3_tokenizer)
    start = save_draft_model(tmp_path / "draft", build_cycle_draft(target))
    write_cycle_data(tmp_path / "train.jsonl", 8)
    torchrun_eagle3([
        "train", "online", "--fsdp", "--target-model", str(target.directory), "--train-data", str(tmp_path / "train.jsonl"),
        "--output-dir", str(tmp_path / "tuned"), "--init-draft", str(start), "--chat-template", "qwen3", "--precision", "fp32",
        "--per-device-batch-size", "2", "--learning-rate", "1e-5", "--max-steps", "2", "--ttt-length", "2",
    ])
    tuned = tmp_path / "tuned" / "final"
    before, after = load_file(start / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert before.keys() == after.keys() and torch.equal(before["d2t"], after["d2t"])
    assert not torch.equal(before["midlayer.mlp.down_proj.weight"], after["midlayer.mlp.down_proj.weight"])  # it trained
    assert inspect_checkpoint(tuned, target_config=read_target_config(target.directory)).problems == []
    assert_vllm_accepts(vllm_python, target, tuned, tmp_path / "fsdp.log")
