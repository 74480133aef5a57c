"""``train offline`` tokens/s on a real dump, for one or more source trees, alternating.

Each round trains every tree once (``python -m eagle3cli train offline`` with that tree on
``PYTHONPATH``, the same dump, flags and seed, a fresh output folder) and reads the rate the
trainer logs (``tokens_per_s`` of each logged window in ``metrics.jsonl``; the first window,
which holds start-up, is left out). Comparing the working tree with an older commit:

    git worktree add /tmp/eagle3-before 84b1db0
    python benchmarks/train_throughput.py --dump runs/qs3/hidden --target runs/qs3/target \
        --tree before=/tmp/eagle3-before/src --tree after=src --rounds 3

Prints the median and range per tree. Run it alone on the machine: two torch jobs at once
make every figure meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def train_rate(tree: Path, args: argparse.Namespace, output: Path) -> float:
    """Median tokens/s over the logged windows after the first one."""
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "eagle3cli", "train", "offline", "--target-model", str(args.target),
        "--train-hidden", str(args.dump), "--output-dir", str(output), "--num-epochs", str(args.epochs),
        "--draft-vocab-size", str(args.draft_vocab), "--precision", args.precision, "--ttt-length", str(args.ttt_length),
        "--max-length", str(args.max_length), "--log-steps", str(args.log_steps), "--no-verify-shards",
    ]
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [row["tokens_per_s"] for row in rows if row.get("kind") == "train"][1:]
    if not rates:
        raise SystemExit(f"{output}: fewer than two logged windows; raise --epochs or lower --log-steps")
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump", type=Path, required=True, help="dump-hidden output folder")
    parser.add_argument("--target", type=Path, required=True, help="the dump's target model folder")
    parser.add_argument("--tree", action="append", required=True, help="NAME=SRC_DIR (a checkout's src/); repeat")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--draft-vocab", type=int, default=8192)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--ttt-length", type=int, default=7)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--log-steps", type=int, default=10)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    rates: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for name, tree in trees.items():
                rate = train_rate(Path(tree), args, Path(scratch) / name)
                rates[name].append(rate)
                print(f"round {round_index + 1} {name}: {rate:.0f} tok/s", file=sys.stderr, flush=True)
    first = next(iter(trees))
    print(f"| tree | tokens/s (median) | range | vs {first} |\n|---|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        ratio = median / statistics.median(rates[first])
        print(f"| {name} | {median:.0f} | {min(values):.0f}–{max(values):.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
