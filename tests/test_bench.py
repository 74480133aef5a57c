"""``eagle3 bench``: questions, report figures, and the whole command on a tiny target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from eagle3cli.bench.questions import (
    BUNDLED_BENCH_NAMES,
    Question,
    bundled_question_file,
    load_questions,
    read_question_file,
    select_questions,
)
from eagle3cli.bench.report import QuestionResult, TurnResult, acceptance_by_position, summarize, vocabulary_coverage
from eagle3cli.bench.runner import answer_all, run_workers
from eagle3cli.cli.main import app
from eagle3cli.config import BenchConfig
from eagle3cli.draft.checkpoint import save_draft_model
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.errors import Eagle3Error

MT_BENCH = bundled_question_file("mt_bench")
runner = CliRunner()


@pytest.fixture(scope="module")
def random_draft_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_target_dir: Path) -> Path:
    """A random-init draft for the tiny Qwen3 target (draft vocab = half the target's)."""
    target_config = read_target_config(qwen3_target_dir)
    vocab_size = target_config["vocab_size"]
    torch.manual_seed(1)
    draft = Eagle3DraftModel(derive_draft_config(target_config, draft_vocab_size=vocab_size // 2))
    vocab_map = build_vocab_map(torch.randint(0, 50, (vocab_size,)), vocab_size // 2)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return save_draft_model(tmp_path_factory.mktemp("draft") / "draft", draft)


def bench_args(target: Path, draft: Path, output: Path, *extra: str) -> list[str]:
    return [
        "bench", "--base-model-path", str(target), "--eagle-model-path", str(draft), "--model-id", "tiny",
        "--bench-data", str(MT_BENCH), "--question-end", "2", "--max-new-token", "24", "--temperature", "0",
        "--chat-template", "qwen3", "--device", "cpu", "--output-dir", str(output), *extra,
    ]


def answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_modes_take_turns_question_by_question(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.bench import runner as bench_runner

    calls: list[tuple[str, int, int]] = []
    real_answer = bench_runner.answer_question
    monkeypatch.setattr(bench_runner, "answer_question", lambda models, question, mode, config, seed:
                        calls.append((mode, question.question_id, seed)) or real_answer(models, question, mode, config, seed))
    config = BenchConfig(
        base_model_path=str(qwen3_target_dir), eagle_model_path=str(random_draft_dir), model_id="t", output_dir=str(tmp_path),
        mode="both", temperature=0, max_new_token=4, chat_template="qwen3", device="cpu", question_end=3,
        total_token=4, depth=2, top_k=1,
    )
    done: list[tuple[str, int]] = []
    bench_runner.run_bench(config, on_question=lambda mode, result: done.append((mode, result.question_id)))
    seed = config.seed
    warm_up = [("baseline", 81, seed), ("eagle", 81, seed)]  # untimed, one per mode
    assert calls == warm_up + [("baseline", 81, seed), ("eagle", 81, seed), ("eagle", 82, seed + 1), ("baseline", 82, seed + 1),
                               ("baseline", 83, seed + 2), ("eagle", 83, seed + 2)]
    assert done == [(mode, question) for mode, question, _ in calls[2:]]


def test_bench_both_modes_end_to_end(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, bench_args(qwen3_target_dir, random_draft_dir, tmp_path))
    assert result.exit_code == 0, result.output
    eagle = answers(tmp_path / "tiny-temperature-0.0-eagle.jsonl")
    baseline = answers(tmp_path / "tiny-temperature-0.0-baseline.jsonl")
    assert [a["question_id"] for a in eagle] == [a["question_id"] for a in baseline] == [81, 82]
    for spec, plain in zip(eagle, baseline):
        assert len(spec["choices"][0]["turns"]) == 2  # both MT-bench turns answered
        assert spec["choices"][0]["token_ids"] == plain["choices"][0]["token_ids"]  # lossless at T = 0
        assert spec["choices"][0]["turns"] == plain["choices"][0]["turns"]
        assert all(sum(lengths) + 1 == new for lengths, new in zip(spec["choices"][0]["accept_lengths"], spec["choices"][0]["new_tokens"]))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"settings", "hardware", "modes", "categories", "speedup", "identical_turns", "draft_vocabulary"}
    assert summary["modes"]["eagle"]["tau"] >= 1.0 and summary["speedup"] > 0
    assert summary["identical_turns"] == 4
    in_vocabulary = load_file(random_draft_dir / "model.safetensors")["t2d"]
    token_ids = [token for record in eagle for turn in record["choices"][0]["token_ids"] for token in turn]
    covered = sum(bool(in_vocabulary[token]) for token in token_ids)
    assert summary["draft_vocabulary"] == {"draft_vocab_size": int(in_vocabulary.sum()), "answer_tokens": len(token_ids),
                                           "covered": covered, "coverage": covered / len(token_ids)}
    assert set(summary["categories"]) == {"writing"}
    assert summary["settings"]["total_token"] == 60 and summary["settings"]["num_questions"] == 2
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "config.json").read_text())["model_id"] == "tiny"
    assert "speed-up" in result.stdout
    assert "greedy answers token-identical to baseline: 4 of 4 turns" in result.stdout
    assert f"draft vocabulary ({int(in_vocabulary.sum()):,} tokens): {covered / len(token_ids):.1%} of the answers' " in result.stdout
    assert "Loading weights" not in result.stderr  # transformers' own bar stays out of the command's output


def test_chain_drafting_is_lossless_too(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path) -> None:
    config = BenchConfig(
        base_model_path=str(qwen3_target_dir), eagle_model_path=str(random_draft_dir), model_id="t", output_dir=str(tmp_path),
        temperature=0, max_new_token=16, top_k=1, depth=3, chat_template="qwen3", device="cpu",
    )
    questions = select_questions(read_question_file(MT_BENCH), 2, 4)
    modes = answer_all(config, questions)
    assert [t.token_ids for r in modes["eagle"] for t in r.turns] == [t.token_ids for r in modes["baseline"] for t in r.turns]


def test_two_worker_processes_merge_in_question_order(qwen3_target_dir: Path, tmp_path: Path) -> None:
    config = BenchConfig(
        base_model_path=str(qwen3_target_dir), model_id="t", output_dir=str(tmp_path), mode="baseline",
        temperature=0, max_new_token=8, chat_template="qwen3", device="cpu",
    )
    questions = select_questions(read_question_file(MT_BENCH), 0, 3)
    merged = run_workers(config, questions, [None, None])
    single = answer_all(config, questions)
    assert [r.question_id for r in merged["baseline"]] == [81, 82, 83]
    assert [t.token_ids for r in merged["baseline"] for t in r.turns] == [t.token_ids for r in single["baseline"] for t in r.turns]


def test_draft_from_another_target_is_refused(qwen3_target_dir: Path, llama_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    target_config = read_target_config(llama_target_dir)
    draft = Eagle3DraftModel(derive_draft_config(target_config, draft_vocab_size=64))
    vocab_map = build_vocab_map(torch.arange(target_config["vocab_size"]), 64)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    draft_dir = save_draft_model(tmp_path / "llama-draft", draft)
    result = runner.invoke(app, bench_args(qwen3_target_dir, draft_dir, tmp_path / "out"))
    if target_config["vocab_size"] == read_target_config(qwen3_target_dir)["vocab_size"]:
        pytest.skip("the tiny tokenizers happen to share a vocabulary size")
    assert result.exit_code == 1
    assert "does not fit target" in result.stderr and "vocab_size" in result.stderr


def test_eagle_mode_needs_a_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    result = runner.invoke(app, ["bench", "--base-model-path", "x", "--model-id", "m", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--eagle-model-path is required for --mode both" in result.stderr


def test_question_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["hi"]}\n{"question_id": 2, "turns": []}\n')
    with pytest.raises(Eagle3Error, match=r"q.jsonl line 2: 'turns' must be a non-empty list"):
        read_question_file(bad)
    with pytest.raises(Eagle3Error, match="does not exist"):
        read_question_file(tmp_path / "missing.jsonl")
    with pytest.raises(Eagle3Error, match="unknown bench name 'mmlu'.*bundled.*hub:ORG/NAME"):
        load_questions("mmlu", None)
    with pytest.raises(Eagle3Error, match="select no question"):
        select_questions(read_question_file(MT_BENCH), 90, 95)


# EAGLE's files, byte for byte (git blob ids, as listed in bench/data/SOURCES.md).
EAGLE_BLOB_IDS = {
    "mt_bench": "464e2c22f7a021a0f9a584d232338a9a17c40066",
    "alpaca": "dba46ec7e03a28c0df1b9650b4cbd4f2618e6817",
    "gsm8k": "f1dc2e9b1e29566f7607c6b25e9639e3238d5fc2",
    "humaneval": "684b560dd5a5ddd130a354d7cfa6fc083fa988ee",
}


@pytest.mark.parametrize("name", BUNDLED_BENCH_NAMES)
def test_bundled_question_files_are_eagles(name: str) -> None:
    import hashlib

    path = bundled_question_file(name)
    content = path.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() == EAGLE_BLOB_IDS[name]
    assert EAGLE_BLOB_IDS[name] in (path.parents[1] / "SOURCES.md").read_text(encoding="utf-8")
    questions = read_question_file(path)
    assert len(questions) == 80 and all(q.turns for q in questions)


def test_bench_names_read_the_bundled_files_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a bundled bench name must not reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    mt_bench = load_questions("mt_bench", None)
    assert [q.question_id for q in mt_bench[:2]] == [81, 82] and len(mt_bench[0].turns) == 2
    assert load_questions("humaneval", None)[0].turns[0].startswith("Complete the code I provided.")


def test_hub_questions_use_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        if name == "openai/gsm8k":
            return [{"question": "What is 3 + 4?", "answer": "7"}]
        return [{"question_id": 7, "category": "x", "turns": ["a", "b"]}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_questions("hub:gsm8k", None) == [Question(0, "math", ("What is 3 + 4?",))]
    assert load_questions("hub:me/my-questions:test", None) == [Question(7, "x", ("a", "b"))]
    assert calls == [("openai/gsm8k", "main", "test"), ("me/my-questions", None, "test")]
    with pytest.raises(Eagle3Error, match="names no hub dataset"):
        load_questions("hub:nothing", None)


def test_report_figures() -> None:
    assert acceptance_by_position([1, 3, 4, 2]) == [0.75, 0.5, 0.25]
    eagle = [QuestionResult(1, "math", [TurnResult("a", 10, 2.0, [3, 3, 3])])]
    baseline = [QuestionResult(1, "math", [TurnResult("a", 10, 5.0, [1] * 9)])]
    summary = summarize({"eagle": eagle, "baseline": baseline}, {}, {})
    assert summary["modes"]["eagle"]["tau"] == 3.0
    assert summary["speedup"] == pytest.approx(2.5)
    assert summary["categories"]["math"]["speedup"] == pytest.approx(2.5)
    with pytest.raises(Eagle3Error, match="different questions"):
        summarize({"eagle": eagle, "baseline": [QuestionResult(2, "math", [])]}, {}, {})
    assert "identical_turns" not in summary  # no temperature in the settings: not a greedy run


def test_vocabulary_coverage_counts_the_answers_tokens_the_draft_can_propose() -> None:
    in_vocabulary = [True, False, True, False, False]
    results = [QuestionResult(1, "math", [TurnResult("a", 3, 1.0, [1], [0, 1, 2]), TurnResult("b", 2, 1.0, [1], [2, 4])]),
               QuestionResult(2, "math", [TurnResult("c", 1, 1.0, [1], [3])])]
    assert vocabulary_coverage(results, in_vocabulary) == {"draft_vocab_size": 2, "answer_tokens": 6, "covered": 3, "coverage": 0.5}
    assert vocabulary_coverage([QuestionResult(1, "math", [TurnResult("a", 3, 1.0, [1])])], in_vocabulary) is None  # no token ids


def test_greedy_summary_counts_turns_identical_to_baseline() -> None:
    def results(*token_ids: list[int]) -> list[QuestionResult]:
        return [QuestionResult(1, "math", [TurnResult("a", len(ids), 1.0, [1], ids) for ids in token_ids])]

    baseline = results([5, 6, 7], [8, 9])
    greedy = {"temperature": 0.0}
    assert summarize({"eagle": results([5, 6, 7], [8, 9]), "baseline": baseline}, greedy, {})["identical_turns"] == 2
    assert summarize({"eagle": results([5, 6, 7], [8, 3]), "baseline": baseline}, greedy, {})["identical_turns"] == 1
    assert summarize({"eagle": results([5, 6, 7], []), "baseline": baseline}, greedy, {})["identical_turns"] is None
    assert "identical_turns" not in summarize({"eagle": results([5], [8]), "baseline": baseline}, {"temperature": 1.0}, {})


def test_vllm_backend_flags_reach_the_vllm_runner(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.bench import vllm_backend

    calls: list[dict] = []

    def fake_run(questions, **kwargs):
        calls.append(kwargs)
        speculative = kwargs["draft_dir"] is not None
        turns = [TurnResult("x", 4, 1.0 if speculative else 2.0, [2, 1] if speculative else [], [1, 2, 3, 4])]
        results = [QuestionResult(q.question_id, q.category, turns) for q in questions]
        return vllm_backend.VllmBenchRun(results, {"backend": "vllm", "speculative": speculative})

    monkeypatch.setattr(vllm_backend, "run_vllm_questions", fake_run)
    args = bench_args(qwen3_target_dir, random_draft_dir, tmp_path, "--backend", "vllm", "--num-speculative-tokens", "4", "--no-metrics")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [call["draft_dir"] is None for call in calls] == [True, False]  # baseline, then eagle
    assert all(call["num_speculative_tokens"] == 4 and call["dtype"] == "float32" for call in calls)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["modes"]["eagle"]["vllm"] == {"backend": "vllm", "speculative": True}
    assert summary["speedup"] == pytest.approx(2.0)
    assert not (tmp_path / "summary.png").exists()


def test_target_without_weights_is_one_clear_error(qwen3_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    broken = tmp_path / "no-weights"
    shutil.copytree(qwen3_target_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    args = ["bench", "--base-model-path", str(broken), "--mode", "baseline", "--model-id", "m", "--bench-data", str(MT_BENCH),
            "--question-end", "1", "--chat-template", "qwen3", "--device", "cpu", "--output-dir", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"could not load the target model from {broken}" in result.stderr
    assert "--trust-remote-code" not in result.stderr  # bench has no such flag: the hint must not suggest it


def test_progress_knows_the_total_before_any_model_loads(qwen3_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eagle3cli.bench import runner as bench_runner

    events: list[tuple] = []
    real_load = bench_runner.load_models
    monkeypatch.setattr(bench_runner, "load_models", lambda config: events.append(("load",)) or real_load(config))
    config = BenchConfig(
        base_model_path=str(qwen3_target_dir), model_id="t", output_dir=str(tmp_path), mode="baseline",
        temperature=0, max_new_token=4, chat_template="qwen3", device="cpu", question_end=3,
    )
    bench_runner.run_bench(config, on_start=lambda modes, total: events.append(("start", modes, total)),
                           on_question=lambda mode, result: events.append(("question", mode)))
    assert events == [("start", ["baseline"], 3), ("load",), *[("question", "baseline")] * 3]


def test_summary_plot_shows_every_position_integer_ticks_and_the_run_in_its_title() -> None:
    import matplotlib.pyplot as plt

    from eagle3cli.bench.report import summary_figure

    eagle = [QuestionResult(1, "math", [TurnResult("a", 10, 2.0, [3, 1, 2])]), QuestionResult(2, "code", [TurnResult("b", 6, 1.0, [1, 2])])]
    baseline = [QuestionResult(1, "math", [TurnResult("a", 10, 4.0, [])]), QuestionResult(2, "code", [TurnResult("b", 6, 2.0, [])])]
    modes = {"eagle": eagle, "baseline": baseline}
    settings = {"model_id": "tiny", "bench_name": "mt_bench", "temperature": 0.0, "depth": 5, "backend": "hf"}
    figure = summary_figure(summarize(modes, settings, {}), modes)
    try:
        histogram, acceptance, per_tau, per_speedup = figure.axes
        assert figure._suptitle.get_text() == "tiny  ·  mt_bench  ·  T = 0.0  ·  τ = 1.80  ·  speed-up 2.00x"
        heights = [patch.get_height() for patch in acceptance.patches]
        assert heights == [0.6, 0.2, 0.0, 0.0, 0.0, 0.0]  # positions 1..depth + 1, never-accepted ones as zeros
        figure.canvas.draw()
        for axis in (histogram.xaxis, histogram.yaxis, acceptance.xaxis):
            assert all(float(tick).is_integer() for tick in axis.get_majorticklocs())
        assert [label.get_text() for label in per_tau.get_xticklabels()] == ["code", "math"]
        assert [round(patch.get_height(), 2) for patch in per_speedup.patches] == [2.0, 2.0]
    finally:
        plt.close(figure)


def test_a_broken_draft_is_refused_before_the_target_loads(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from eagle3cli.target import loading

    monkeypatch.delenv("EAGLE3_DEBUG", raising=False)
    monkeypatch.setattr(loading, "load_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError("target loaded first")))
    broken = tmp_path / "draft"
    shutil.copytree(random_draft_dir, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    result = runner.invoke(app, bench_args(qwen3_target_dir, broken, tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: draft {broken} does not fit target") and "model.safetensors does not exist" in result.stderr
    assert "--trust-remote-code" not in result.stderr


@pytest.mark.parametrize("head_dtype", ["float32", "bfloat16"])
def test_a_lower_precision_draft_head_stays_lossless(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path, head_dtype: str) -> None:
    result = runner.invoke(app, bench_args(qwen3_target_dir, random_draft_dir, tmp_path, "--draft-head-dtype", head_dtype, "--no-metrics"))
    assert result.exit_code == 0, result.output
    eagle = answers(tmp_path / "tiny-temperature-0.0-eagle.jsonl")
    baseline = answers(tmp_path / "tiny-temperature-0.0-baseline.jsonl")
    assert [a["choices"][0]["token_ids"] for a in eagle] == [a["choices"][0]["token_ids"] for a in baseline]


def test_the_fused_and_compiled_target_forwards_decode_what_transformers_forward_decodes(qwen3_target_dir: Path, random_draft_dir: Path, tmp_path: Path) -> None:
    """On a CPU ``auto`` runs the target through eagle3's fused forward and ``--compile``
    through torch.compile over a static cache; their answers, eagle and baseline, are token
    for token those of transformers' own forward, and the summary says which ran."""
    token_ids = {}
    variants = {"auto": (["--target-forward", "auto"], "fused"), "transformers": (["--target-forward", "transformers"], "transformers"),
                "compile": (["--compile"], "transformers, compiled")}
    for name, (flags, used) in variants.items():
        output = tmp_path / name
        result = runner.invoke(app, bench_args(qwen3_target_dir, random_draft_dir, output, *flags, "--no-metrics"))
        assert result.exit_code == 0, result.output
        summary = json.loads((output / "summary.json").read_text())
        assert summary["settings"]["target_forward"] == used
        for mode in ("eagle", "baseline"):
            token_ids[name, mode] = [a["choices"][0]["token_ids"] for a in answers(output / f"tiny-temperature-0.0-{mode}.jsonl")]
    assert len(set(map(str, token_ids.values()))) == 1
    with pytest.raises(ValueError, match="--target-forward chooses how the built-in decoder runs the target; vLLM runs its own"):
        BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", backend="vllm", target_forward="fused")
    with pytest.raises(ValueError, match="--compile compiles the built-in decoder's target forwards; vLLM compiles its own"):
        BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", backend="vllm", compile=True)
    with pytest.raises(ValueError, match="leave out --target-forward fused"):
        BenchConfig(base_model_path="t", eagle_model_path="d", model_id="m", compile=True, target_forward="fused")


def test_the_draft_head_dtype_follows_the_cpu() -> None:
    from eagle3cli.bench.runner import resolve_head_dtype
    from eagle3cli.target.loading import native_bf16

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_head_dtype("auto", cpu, torch.float32) == (torch.bfloat16 if native_bf16(cpu) else torch.float32)
    assert resolve_head_dtype("auto", cuda, torch.float16) == torch.float16
    assert resolve_head_dtype("float32", cpu, torch.bfloat16) == torch.float32


def test_the_bench_reads_the_draft_weights_once_and_shares_the_target_embedding(qwen3_target_dir: Path, random_draft_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from eagle3cli.bench.runner import load_models
    from eagle3cli.draft import checkpoint

    reads: list[Path] = []
    real_read = checkpoint.read_safetensors
    monkeypatch.setattr(checkpoint, "read_safetensors", lambda path: reads.append(Path(path)) or real_read(path))
    embeddings: list[tuple[int, ...]] = []
    real_init = torch.nn.Embedding.__init__
    monkeypatch.setattr(torch.nn.Embedding, "__init__", lambda self, *args, **kwargs: embeddings.append(args[:2]) or real_init(self, *args, **kwargs))
    config = BenchConfig(base_model_path=str(qwen3_target_dir), eagle_model_path=str(random_draft_dir), model_id="tiny",
                         chat_template="qwen3", device="cpu", dtype="float32", draft_head_dtype="float32")
    models = load_models(config)
    draft = models.draft
    assert reads == [random_draft_dir / "model.safetensors"]
    saved = load_file(random_draft_dir / "model.safetensors")
    loaded = draft.state_dict()
    for key in ("fc.weight", "lm_head.weight", "d2t", "t2d"):
        assert torch.equal(loaded[key].contiguous(), saved[key]), key
    # the target's embedding is shared, and the draft allocates none (vocabulary x hidden floats)
    assert draft.embed_tokens is models.target.model.get_input_embeddings()
    assert len(embeddings) == 1, embeddings  # the target's
