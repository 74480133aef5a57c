"""AngelSlim's benchmark command lines run unchanged under ``eagle3 bench``.

The four command lines of AngelSlim's Eagle3 guide (``docs/source/features/speculative_decoding/
eagle/eagle.md``, section 3.1.3: basic, full, eagle-only, multi-GPU), with ``python3
tools/spec_benchmark.py`` replaced by ``eagle3 bench`` and only the model paths changed, on
a tiny target whose every answer ends at once (so the whole 80-question MT-bench runs in
seconds at AngelSlim's defaults: T = 1, 1024 new tokens). AngelSlim flags eagle3 has no use
for pass at their defaults and otherwise fail with one line saying what eagle3 does.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from builders.models import save_brief_target
from eagle3cli.cli.main import app
from eagle3cli.draft.checkpoint import save_draft_model
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map

runner = CliRunner()
BASE = "--base-model-path /path/to/base/model --eagle-model-path /path/to/eagle/model"
GUIDE_LINES = {
    "basic": f"{BASE} --model-id ${{MODEL_ID}} --mode both",
    "full": f"{BASE} --model-id qwen3-8b --mode both --output-dir ./results --max-new-token 512 --temperature 0.0",
    "eagle-only": f"{BASE} --model-id qwen3-8b --mode eagle",
    "multi-gpu": f"{BASE} --model-id qwen3-8b --num-gpus-per-model 1 --num-gpus-total 8",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, qwen3_target_dir: Path) -> tuple[Path, Path]:
    """(target, draft): the brief target and a random draft for it."""
    from transformers import AutoTokenizer

    stop = AutoTokenizer.from_pretrained(qwen3_target_dir).convert_tokens_to_ids("<|im_end|>")
    target = save_brief_target(qwen3_target_dir, tmp_path_factory.mktemp("brief") / "target", stop)
    config = read_target_config(target)
    torch.manual_seed(0)
    draft = Eagle3DraftModel(derive_draft_config(config, draft_vocab_size=config["vocab_size"] // 2))
    vocab_map = build_vocab_map(torch.arange(config["vocab_size"]), config["vocab_size"] // 2)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return target, save_draft_model(tmp_path_factory.mktemp("brief") / "draft", draft)


def guide_args(line: str, target: Path, draft: Path) -> list[str]:
    line = line.replace("/path/to/base/model", str(target)).replace("/path/to/eagle/model", str(draft))
    return ["bench", *shlex.split(line.replace("${MODEL_ID}", "brief"))]


def answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", ["basic", "full", "eagle-only"])
def test_guide_command_lines_run_unchanged(
    name: str, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, guide_args(GUIDE_LINES[name], *models))
    assert result.exit_code == 0, result.output
    output = tmp_path / ("results" if name == "full" else "output/mt_bench")  # AngelSlim's default: output/<bench>
    model_id = "brief" if name == "basic" else "qwen3-8b"
    temperature = "0.0" if name == "full" else "1.0"
    modes = ["eagle"] if name == "eagle-only" else ["eagle", "baseline"]
    for mode in modes:
        records = answers(output / f"{model_id}-temperature-{temperature}-{mode}.jsonl")
        assert [record["question_id"] for record in records] == list(range(81, 161))  # all 80 MT-bench questions
        assert all(len(record["choices"][0]["turns"]) == 2 for record in records)
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    settings = summary["settings"]
    assert (settings["max_new_token"], settings["temperature"]) == ((512, 0.0) if name == "full" else (1024, 1.0))
    assert set(summary["modes"]) == set(modes)


def test_multi_gpu_line_runs_where_the_gpus_are_else_says_what_it_found(
    models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    result = runner.invoke(app, guide_args(GUIDE_LINES["multi-gpu"], *models))
    visible = torch.cuda.device_count()
    if visible >= 8:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert f"--num-gpus-total 8 asks for 8 GPUs, but this machine has {visible} CUDA device(s) visible" in result.stderr


def test_deploy_backend_is_the_angelslim_spelling_of_backend(
    models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    target, draft = models
    common = ["bench", "--base-model-path", str(target), "--eagle-model-path", str(draft), "--model-id", "m",
              "--question-end", "1", "--output-dir", str(tmp_path)]
    result = runner.invoke(app, [*common, "--deploy-backend", "pytorch"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "config.json").read_text())["backend"] == "hf"
    result = runner.invoke(app, [*common, "--deploy-backend", "pytorch_tts"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "pytorch_tts is AngelSlim's speech (TTS) benchmark" in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-choices", "3"], "--num-choices 3: eagle3 bench gives one answer per question"),
        (["--batch-size", "200"], "--batch-size 200: eagle3 bench decodes one request at a time"),
        (["--early-stop-method", "confidence"], "--early-stop-method confidence: eagle3 has no SpecExit early stopping"),
        (["--generate-audio"], "--generate-audio: eagle3 benchmarks text models"),
        (["--speculative-draft-tensor-parallel-size", "2"], "--speculative-draft-tensor-parallel-size is for --backend vllm"),
    ],
)
def test_angelslim_flags_without_an_eagle3_meaning_are_one_line(
    flags: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    common = ["bench", "--base-model-path", "t", "--eagle-model-path", "d", "--model-id", "m", "--output-dir", str(tmp_path)]
    result = runner.invoke(app, [*common, *flags])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_angelslim_flags_at_their_defaults_pass(models: tuple[Path, Path], tmp_path: Path) -> None:
    target, draft = models
    result = runner.invoke(app, [
        "bench", "--base-model-path", str(target), "--eagle-model-path", str(draft), "--model-id", "m", "--question-end", "1",
        "--output-dir", str(tmp_path), "--num-choices", "1", "--batch-size", "1", "--speculative-draft-tensor-parallel-size", "1",
        "--mode", "eagle",
    ])
    assert result.exit_code == 0, result.output
