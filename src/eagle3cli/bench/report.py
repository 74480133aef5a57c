"""Bench results: answer records, ``summary.json`` figures and the PNG plot.

τ (acceptance length) is the mean number of tokens one target forward produced during
speculative decoding (accepted draft tokens + the target's own bonus token). Per-position
acceptance ``rate[i]`` is the fraction of decoding steps that accepted at least ``i + 1``
draft tokens. Speed-up is eagle tokens/s over baseline tokens/s on the same questions.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error


@dataclass
class TurnResult:
    """One answered turn: its text, token ids and decoding statistics."""

    text: str
    new_tokens: int
    wall_time: float
    accept_lengths: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)


@dataclass
class QuestionResult:
    """All turns of one question in one mode."""

    question_id: int | str
    category: str
    turns: list[TurnResult]

    def answer_record(self, model_id: str) -> dict[str, Any]:
        """The EAGLE/FastChat answer-file record."""
        choice = {"index": 0, "turns": [turn.text for turn in self.turns]}
        for name in ("new_tokens", "wall_time", "accept_lengths", "token_ids"):
            choice[name] = [getattr(turn, name) for turn in self.turns]
        return {"question_id": self.question_id, "answer_id": uuid.uuid4().hex, "model_id": model_id,
                "choices": [choice], "tstamp": time.time()}


def mode_figures(results: Iterable[QuestionResult]) -> dict[str, Any]:
    """Tokens, time, tokens/s and (when there are decoding steps) τ for one mode."""
    turns = [turn for result in results for turn in result.turns]
    new_tokens = sum(turn.new_tokens for turn in turns)
    wall_time = sum(turn.wall_time for turn in turns)
    steps = [length for turn in turns for length in turn.accept_lengths]
    figures: dict[str, Any] = {
        "num_turns": len(turns),
        "new_tokens": new_tokens,
        "wall_time": wall_time,
        "tokens_per_second": new_tokens / wall_time if wall_time > 0 else 0.0,
    }
    if steps:
        figures["tau"] = sum(steps) / len(steps)
        figures["num_steps"] = len(steps)
        figures["acceptance_by_position"] = acceptance_by_position(steps)
    return figures


def acceptance_by_position(accept_lengths: list[int]) -> list[float]:
    """``rate[i]``: fraction of steps that accepted at least ``i + 1`` draft tokens."""
    longest = max(accept_lengths) - 1
    return [sum(length - 1 > position for length in accept_lengths) / len(accept_lengths) for position in range(longest)]


def summarize(modes: dict[str, list[QuestionResult]], settings: dict[str, Any], hardware: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-category figures per mode, and the speed-up when both modes ran."""
    summary: dict[str, Any] = {"settings": settings, "hardware": hardware, "modes": {}, "categories": {}}
    for mode, results in modes.items():
        summary["modes"][mode] = mode_figures(results)
        for category, members in by_category(results).items():
            summary["categories"].setdefault(category, {})[mode] = mode_figures(members)
    if "eagle" in modes and "baseline" in modes:
        check_same_questions(modes["eagle"], modes["baseline"])
        summary["speedup"] = speedup(summary["modes"]["eagle"], summary["modes"]["baseline"])
        for figures in summary["categories"].values():
            figures["speedup"] = speedup(figures["eagle"], figures["baseline"])
        if settings.get("temperature") == 0:
            summary["identical_turns"] = identical_turns(modes["eagle"], modes["baseline"])
    return summary


def vocabulary_coverage(results: Iterable[QuestionResult], in_vocabulary: Sequence[bool]) -> dict[str, Any] | None:
    """How many of the answers' tokens the draft could propose at all: ``in_vocabulary[id]`` (the
    draft's ``t2d``) over the token ids of every turn. A token outside the draft's vocabulary is
    never drafted, so ``coverage`` bounds every position's acceptance; ``None`` when the answers
    carry no token ids."""
    token_ids = [token for result in results for turn in result.turns for token in turn.token_ids]
    if not token_ids:
        return None
    covered = sum(bool(in_vocabulary[token]) for token in token_ids)
    return {"draft_vocab_size": sum(map(bool, in_vocabulary)), "answer_tokens": len(token_ids), "covered": covered,
            "coverage": covered / len(token_ids)}


def identical_turns(eagle: list[QuestionResult], baseline: list[QuestionResult]) -> int | None:
    """At T = 0: how many turns' eagle tokens equal the baseline's (lossless decoding: all of
    them); ``None`` when the answers carry no token ids."""
    pairs = [(a.token_ids, b.token_ids) for x, y in zip(eagle, baseline) for a, b in zip(x.turns, y.turns)]
    if not all(a and b for a, b in pairs):
        return None
    return sum(a == b for a, b in pairs)


def by_category(results: list[QuestionResult]) -> dict[str, list[QuestionResult]]:
    groups: dict[str, list[QuestionResult]] = defaultdict(list)
    for result in results:
        groups[result.category or "all"].append(result)
    return dict(groups)


def speedup(eagle: dict[str, Any], baseline: dict[str, Any]) -> float:
    return eagle["tokens_per_second"] / baseline["tokens_per_second"] if baseline["tokens_per_second"] else 0.0


def check_same_questions(eagle: list[QuestionResult], baseline: list[QuestionResult]) -> None:
    """The speed-up is only meaningful over identical question sets."""
    if [r.question_id for r in eagle] != [r.question_id for r in baseline]:
        raise Eagle3Error("eagle and baseline runs answered different questions; no speed-up computed")


def num_draft_positions(summary: dict[str, Any]) -> int:
    """Draft tokens a step can accept at most: the tree's depth + 1 levels (hf) or the chain length (vllm)."""
    settings = summary.get("settings", {})
    if settings.get("backend") == "vllm":
        return int(settings.get("num_speculative_tokens", 0))
    return int(settings.get("depth", -1)) + 1


def summary_title(summary: dict[str, Any]) -> str:
    """Model, benchmark, temperature, τ and speed-up in one line."""
    settings, eagle = summary.get("settings", {}), summary["modes"].get("eagle", {})
    parts = [str(settings.get("model_id", "")), str(settings.get("bench_name", "")), f"T = {settings.get('temperature', '?')}"]
    if "tau" in eagle:
        parts.append(f"τ = {eagle['tau']:.2f}")
    if "speedup" in summary:
        parts.append(f"speed-up {summary['speedup']:.2f}x")
    return "  ·  ".join(part for part in parts if part)


def summary_figure(summary: dict[str, Any], modes: dict[str, list[QuestionResult]]) -> Any:
    """The plot: tokens per target forward, acceptance at every draft position (zeros
    included), and, when the questions span several categories, τ and speed-up per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [length for result in modes.get("eagle", []) for turn in result.turns for length in turn.accept_lengths]
    positions = max(num_draft_positions(summary), max(steps, default=1) - 1)
    rates = summary["modes"].get("eagle", {}).get("acceptance_by_position", [])
    rates = [*rates, *[0.0] * (positions - len(rates))]
    categories = sorted(name for name, figures in summary["categories"].items() if "eagle" in figures)
    rows = 2 if len(categories) > 1 else 1
    figure, axes = plt.subplots(rows, 2, figsize=(11, 4.2 * rows), squeeze=False)
    histogram, acceptance = axes[0]
    if steps:
        histogram.hist(steps, bins=range(1, max(steps) + 2), align="left", rwidth=0.8)
    histogram.set(title="tokens per target forward", xlabel="tokens (accepted draft tokens + 1)", ylabel="decoding steps")
    acceptance.bar(range(1, positions + 1), rates)
    acceptance.set(title="acceptance by draft position", xlabel="draft position", ylabel="fraction of steps", ylim=(0, 1))
    for axis in (histogram.xaxis, histogram.yaxis, acceptance.xaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    if rows == 2:
        taus = [summary["categories"][name]["eagle"].get("tau", 0.0) for name in categories]
        axes[1][0].bar(categories, taus)
        axes[1][0].set(title="τ per category", ylabel="τ")
        speedups = [summary["categories"][name].get("speedup", 0.0) for name in categories]
        axes[1][1].bar(categories, speedups)
        axes[1][1].axhline(1.0, color="grey", linewidth=0.8)
        axes[1][1].set(title="speed-up per category" if "speedup" in summary else "speed-up per category (needs --mode both)",
                       ylabel="eagle / baseline tokens/s")
        for axis in axes[1]:
            axis.tick_params(axis="x", labelrotation=30)
    figure.suptitle(summary_title(summary))
    figure.tight_layout()
    return figure


def plot_summary(summary: dict[str, Any], modes: dict[str, list[QuestionResult]], path: Path) -> Path:
    """Save :func:`summary_figure` as a PNG."""
    import matplotlib.pyplot as plt

    figure = summary_figure(summary, modes)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
