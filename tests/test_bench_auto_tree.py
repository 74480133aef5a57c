"""``--total-token/--depth/--top-k auto``: the bench measures candidate trees on the warm-up
question, keeps the fastest, says which and why, and caches the choice per setup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eagle3cli.bench import runner as bench_runner
from eagle3cli.bench import tree_choice
from eagle3cli.cli.main import app
from eagle3cli.config import BenchConfig
from test_bench import answers, bench_args, random_draft_dir  # noqa: F401

runner = CliRunner()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EAGLE3_CACHE_DIR", str(directory))
    return directory


def auto_args(target: Path, draft: Path, output: Path, *extra: str) -> list[str]:
    args = bench_args(target, draft, output, "--no-metrics", *extra)
    return [*args, "--total-token", "auto", "--depth", "auto", "--top-k", "auto"]


def test_auto_measures_the_candidates_keeps_the_fastest_and_caches_it(
    qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[tuple] = []
    real = bench_runner.calibration_speed

    def recording(models, question, config):
        measured.append((config.total_token, config.depth, config.top_k))
        real(models, question, config)  # really decodes; the fake speed makes the pick deterministic
        return {(16, 3, 4): 30.0}.get(measured[-1], 10.0)

    monkeypatch.setattr(bench_runner, "calibration_speed", recording)
    result = runner.invoke(app, auto_args(qwen3_target_dir, random_draft_dir, tmp_path / "first"))
    assert result.exit_code == 0, result.output
    assert measured == [tree_choice.CPU_TREES[0], *tree_choice.CPU_TREES]  # an untimed warm-up, then each candidate
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert [summary["settings"][key] for key in ("total_token", "depth", "top_k")] == [16, 3, 4]
    assert "auto tree 16/3/4" in result.stdout and "16/3/4 30.0" in result.stdout
    eagle = answers(tmp_path / "first" / "tiny-temperature-0.0-eagle.jsonl")
    baseline = answers(tmp_path / "first" / "tiny-temperature-0.0-baseline.jsonl")
    assert [a["choices"][0]["token_ids"] for a in eagle] == [a["choices"][0]["token_ids"] for a in baseline]
    cached = json.loads((cache_dir / tree_choice.CACHE_FILE).read_text())
    assert [entry["tree"] for entry in cached.values()] == [[16, 3, 4]]

    measured.clear()
    result = runner.invoke(app, auto_args(qwen3_target_dir, random_draft_dir, tmp_path / "second"))
    assert result.exit_code == 0, result.output
    assert measured == []  # the choice came from the cache: nothing decoded to calibrate
    assert "measured earlier on this machine" in result.stdout


def test_values_given_explicitly_narrow_the_candidates() -> None:
    config = BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", total_token="auto", depth=3, top_k=4)
    assert tree_choice.candidates(config, on_gpu=False) == [(16, 3, 4)]
    config = config.model_copy(update={"top_k": 3})
    assert tree_choice.candidates(config, on_gpu=False) == [(4, 3, 3)]  # no candidate fits: the rest from the first one
    config = BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", total_token=60, depth="auto", top_k="auto")
    assert tree_choice.candidates(config, on_gpu=True) == [(60, 5, 10)]


def test_auto_is_refused_with_the_vllm_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    result = runner.invoke(app, ["bench", "--base-model-path", "t", "--eagle-model-path", "d", "--model-id", "m",
                                 "--backend", "vllm", "--depth", "auto", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1 and "vLLM drafts a chain of --num-speculative-tokens" in result.stderr


def test_the_cache_key_tells_setups_apart() -> None:
    config = BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", total_token="auto")
    facts = {"target": ["t", 1, 2], "draft": ["d", 3, 4], "device": "cpu", "threads": 2, "dtype": "float32", "head_dtype": "bfloat16"}
    key = tree_choice.cache_key(config, facts)
    assert key == tree_choice.cache_key(config, dict(reversed(list(facts.items()))))
    assert key != tree_choice.cache_key(config, facts | {"threads": 4})
    assert key != tree_choice.cache_key(config.model_copy(update={"temperature": 0.0}), facts)
