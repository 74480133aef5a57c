"""Markdown report of a ``benchmarks/e2e_smollm2.sh`` run (or ``--pick-cpu-tree``: the fastest tree).

Reads only what the run wrote under ``--out``: ``stages.log``, ``regen/summary.json``,
``hidden/manifest.json``, the ``metrics.jsonl`` of each training run and each bench cell's
``summary.json``. Speed-up is eagle tokens/s over the baseline tokens/s of the same cell
(same questions, same temperature, same machine, run back to back).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def tree_dir(tree: str) -> str:
    return tree.replace("/", "-")


def mode_figures(cell: Path, mode: str) -> dict[str, Any] | None:
    summary = read_json(cell / "summary.json")
    return None if summary is None else summary["modes"].get(mode)


def pick_cpu_tree(out: Path, trees: list[str]) -> str:
    """The candidate with the most eagle tokens/s in the sweep."""
    speeds = {}
    for tree in trees:
        figures = mode_figures(out / "sweep" / tree_dir(tree), "eagle")
        if figures is not None:
            speeds[tree] = figures["tokens_per_second"]
    if not speeds:
        raise SystemExit(f"no finished sweep cell under {out / 'sweep'}: run benchmarks/e2e_smollm2.sh first")
    return max(speeds, key=speeds.__getitem__)


def last_train_metrics(metrics: Path, window: int = 4) -> dict[str, float] | None:
    """Mean of the last ``window`` logged training rows (one row is a log_steps average)."""
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("kind") == "train"][-window:]
    if not rows:
        return None
    keys = [key for key in rows[-1] if isinstance(rows[-1][key], (int, float)) and key != "step"]
    mean = {key: sum(row.get(key, 0.0) for row in rows) / len(rows) for key in keys}
    mean["step"] = rows[-1]["step"]
    return mean


def stage_durations(out: Path) -> list[tuple[str, float]]:
    lines = (out / "stages.log").read_text().splitlines() if (out / "stages.log").is_file() else []
    marks = [(float(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in lines if line.strip()]
    return [(name, marks[i + 1][0] - start) for i, (start, name) in enumerate(marks[:-1])]


def speed_row(label: str, cell: Path, baseline: dict[str, Any] | None) -> str:
    eagle = mode_figures(cell, "eagle")
    if eagle is None:
        return f"| {label} | not run | | | | |"
    accept = " ".join(f"{rate:.2f}" for rate in eagle["acceptance_by_position"])
    base_speed = baseline["tokens_per_second"] if baseline else float("nan")
    return (
        f"| {label} | {eagle['tau']:.2f} | {accept} | {base_speed:.1f} | {eagle['tokens_per_second']:.1f} "
        f"| {eagle['tokens_per_second'] / base_speed:.2f}x |"
    )


HEADER = "| cell | τ | acceptance by position | baseline tok/s | eagle tok/s | speed-up |\n|---|---|---|---|---|---|"


def best_eval_metrics(metrics: Path) -> dict[str, float] | None:
    """The eval row (held-out data) with the highest ``sim_accept_len``: the one ``best/`` holds."""
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("kind") == "eval"]
    return max(rows, key=lambda row: row["sim_accept_len"]) if rows else None


def training_lines(out: Path) -> list[str]:
    """Training-window figures (mean of the last logged training rows) beside held-out ones (the
    best eval on the held-out dump; '-' where the run had no eval data)."""
    lines = [
        "| run | steps | epochs | loss | acc@0 train-window | sim. τ train-window | acc@0 held-out | acc@1 held-out "
        "| sim. τ held-out | tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, folder in [
        ("offline (all)", out / "draft"),
        ("offline (subset)", out / "compare" / "offline"),
        ("online (subset)", out / "compare" / "online"),
    ]:
        m = last_train_metrics(folder / "metrics.jsonl")
        if m is None:
            lines.append(f"| {name} | not run | | | | | | | | |")
            continue
        held = best_eval_metrics(folder / "metrics.jsonl")
        held_cells = (
            f"{held['acc@0']:.3f} | {held.get('acc@1', float('nan')):.3f} | {held['sim_accept_len']:.2f}"
            if held else "- | - | -"
        )
        lines.append(
            f"| {name} | {m['step']} | {m.get('epoch', 0) + 1:.0f} | {m['loss']:.2f} | {m['acc@0']:.3f} | "
            f"{m['sim_accept_len']:.2f} | {held_cells} | {m['tokens_per_s']:.0f} |"
        )
    return lines


def report(
    out: Path, seed_tree: str, cpu_tree: str, datasets: list[str], temperatures: list[str], cpu_trees: list[str],
    vllm_cell: str | None = None,
) -> str:
    lines = [f"## e2e SmolLM2 run: {out}", ""]
    regen, manifest = read_json(out / "regen" / "summary.json"), read_json(out / "hidden" / "manifest.json")
    if regen:
        lines.append(
            f"- regeneration (this invocation): {regen['num_done']} done, {regen['num_resumed']} resumed, "
            f"{regen['num_truncated']} truncated, {regen['num_failed']} failed; {regen['num_tokens']} tokens "
            f"at {regen['tokens_per_s']:.0f} tok/s"
        )
    if manifest:
        lines.append(
            f"- dump: {manifest['num_samples']} samples, {manifest['num_tokens']} tokens "
            f"({manifest['num_loss_tokens']} trained), draft vocab {manifest['draft_vocab_size']}"
        )
    for name, seconds in stage_durations(out):
        lines.append(f"- stage `{name}`: {seconds / 60:.1f} min")
    lines += ["", "### Training (mean of the last 4 logged windows)", "", *training_lines(out), ""]
    sweep_base = mode_figures(out / "sweep" / "baseline", "baseline")
    lines += [f"### CPU tree sweep (mt_bench, T=0): fastest = {cpu_tree}", "", HEADER]
    lines += [speed_row(tree, out / "sweep" / tree_dir(tree), sweep_base) for tree in cpu_trees]
    lines += ["", "### Bench", "", HEADER]
    for dataset in datasets:
        for temperature in temperatures:
            base = mode_figures(out / "bench" / f"{dataset}-T{temperature}" / "baseline", "baseline")
            for tree in dict.fromkeys([seed_tree, cpu_tree]):
                cell = out / "bench" / f"{dataset}-T{temperature}" / tree_dir(tree)
                lines.append(speed_row(f"{dataset} T={temperature} {tree}", cell, base))
    if vllm_cell:
        cell = out / "bench" / vllm_cell
        lines += ["", "### vLLM's own EAGLE-3 (`eagle3 bench --backend vllm`)", "", HEADER]
        lines.append(speed_row(vllm_cell, cell, mode_figures(cell, "baseline")))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pick-cpu-tree", nargs="+", metavar="TREE", help="print the fastest of these sweep trees")
    parser.add_argument("--seed-tree", default="60/5/10")
    parser.add_argument("--cpu-tree")
    parser.add_argument("--cpu-trees", nargs="*", default=None, help="sweep trees to list (default: those found)")
    parser.add_argument("--datasets", nargs="+", default=["mt_bench", "gsm8k", "humaneval", "alpaca"])
    parser.add_argument("--temperatures", nargs="+", default=["0", "1"])
    parser.add_argument("--vllm-cell", help="bench cell (under OUT/bench) run with --backend vllm")
    args = parser.parse_args(argv)
    if args.pick_cpu_tree:
        print(pick_cpu_tree(args.out, args.pick_cpu_tree))
        return
    cpu_trees = args.cpu_trees
    if cpu_trees is None:
        found = sorted(p.name for p in (args.out / "sweep").glob("*-*-*") if (p / "summary.json").is_file())
        cpu_trees = [name.replace("-", "/") for name in found]
    cpu_tree = args.cpu_tree or pick_cpu_tree(args.out, cpu_trees)
    sys.stdout.write(
        report(args.out, args.seed_tree, cpu_tree, args.datasets, args.temperatures, cpu_trees, args.vllm_cell)
    )


if __name__ == "__main__":
    main()
