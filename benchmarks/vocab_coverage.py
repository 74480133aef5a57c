"""How much of a benchmark's answers a draft vocabulary of each size can propose.

A draft drafts only tokens of its vocabulary (the ``draft_vocab_size`` most counted target
tokens of its training dump), so the share of a benchmark's answer tokens inside that
vocabulary bounds the acceptance at every draft position. For each size this builds the
vocabulary exactly as ``eagle3 train`` does (``draft.vocab.build_vocab_map`` over the dumps'
loss-token counts) and counts the answer tokens of ``eagle3 bench`` answer files inside it.
Prints a markdown table.

    python benchmarks/vocab_coverage.py --dumps runs/mini/hidden-train3320 runs/mini/hidden-train07 \\
        --answers runs/mini/bench17d/tree16/smollm2-temperature-0.0-baseline.jsonl --sizes 4096 8192 16384 32768
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.dump.reader import open_dump
from eagle3cli.dump.vocab_counts import total_loss_token_counts


def answer_token_ids(path: Path) -> list[int]:
    """Every turn's token ids of an ``eagle3 bench`` answer file."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [token for record in records for choice in record["choices"] for turn in choice["token_ids"] for token in turn]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dumps", type=Path, nargs="+", required=True, help="dump-hidden folders whose counts make the vocabulary")
    parser.add_argument("--answers", type=Path, nargs="+", required=True, help="eagle3 bench answer files (.jsonl)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 12288, 16384, 24576, 32768])
    args = parser.parse_args()
    dumps = [open_dump(directory) for directory in args.dumps]
    vocab_size = int(dumps[0].manifest["target"]["vocab_size"])
    counts = sum(total_loss_token_counts(dump.directory, dump.shards, vocab_size) for dump in dumps)
    answers = torch.tensor([token for path in args.answers for token in answer_token_ids(path)])
    print(f"{int(counts.sum()):,} loss tokens in {len(dumps)} dump(s), {int((counts > 0).sum()):,} distinct; "
          f"{answers.numel():,} answer tokens in {len(args.answers)} file(s)\n")
    print("| draft vocabulary | share of the dumps' loss tokens | share of the answer tokens |\n|---|---|---|")
    for size in args.sizes:
        in_vocabulary = build_vocab_map(counts, size).t2d
        print(f"| {size:,} | {float(counts[in_vocabulary].sum() / counts.sum()):.1%} | {float(in_vocabulary[answers].float().mean()):.1%} |")


if __name__ == "__main__":
    main()
