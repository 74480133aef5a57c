"""float32 or bfloat16 for ``dump-hidden`` on a CPU: how often the bf16 target's next-token
argmax agrees with the float32 target's on real regenerated data, and dump tokens/s of each.

The agreement is counted on every loss position (assistant tokens) of the records, teacher
forced: the bf16 dump trains the draft towards the bf16 target's distribution, so where the
two argmaxes agree the draft learns the same greedy choice. The timing runs ``dump_hidden``
itself on the same records, alternating float32 / bfloat16, ``--repeats`` times each, and
reports the dump loop's rate (what a long dump runs at) and the whole call's (setup and
model load included, which weigh heavily in a small dump).

    python benchmarks/dump_dtype.py --target-model runs/smollm2-quickstart/target \\
        --data runs/smollm2-quickstart/regen/shards --num-records 48
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from eagle3cli.chat_template import tokenize_conversation
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.data.readers import read_conversations
from eagle3cli.dump.runner import dump_hidden
from eagle3cli.target.hub import load_tokenizer
from eagle3cli.target.loading import load_pretrained


def argmax_agreement(args: argparse.Namespace) -> tuple[int, int]:
    """(agreeing, total) loss positions of the float32 and bfloat16 targets."""
    tokenizer = load_tokenizer(str(args.target_model))
    models = {dtype: load_pretrained(args.target_model, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)}
    agree = total = 0
    reader = read_conversations(str(args.data), num_samples=args.num_records)
    with torch.inference_mode():
        for _, conversation in reader:
            sample = tokenize_conversation(tokenizer, conversation, template="auto", max_length=args.max_length)
            ids = torch.tensor([sample.input_ids])
            mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
            choices = [models[dtype](ids).logits[0].float().argmax(-1)[mask] for dtype in models]
            agree += int((choices[0] == choices[1]).sum())
            total += int(mask.sum())
    return agree, total


def dump_rate(args: argparse.Namespace, dtype: str, output_dir: Path) -> tuple[float, float]:
    """Tokens/s of the dump loop (forward, capture, writes: the steady state of a long dump)
    and of the whole call (setup, vocabulary counting and model load included)."""
    config = DumpHiddenConfig(data=str(args.data), target_model=str(args.target_model), output_dir=output_dir,
                              dtype=dtype, device="cpu", chat_template="auto", max_length=args.max_length,
                              num_samples=args.num_records, overwrite=True)
    started = time.perf_counter()
    summary = dump_hidden(config)
    return summary.tokens_per_s, summary.num_tokens_written / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="regenerated records (sample's shards/)")
    parser.add_argument("--num-records", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    agree, total = argmax_agreement(args)
    print(f"argmax agreement bf16 vs float32: {agree}/{total} loss positions = {agree / total:.2%}", flush=True)
    rates: dict[str, list[tuple[float, float]]] = {"float32": [], "bfloat16": []}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeats):
            for dtype in rates:
                rates[dtype].append(dump_rate(args, dtype, Path(workdir) / dtype))
                loop, wall = rates[dtype][-1]
                print(f"round {repeat}: dump {dtype}: loop {loop:.0f} tok/s, whole call {wall:.0f} tok/s", flush=True)
    for dtype, values in rates.items():
        for index, name in enumerate(("loop", "whole call")):
            figures = [value[index] for value in values]
            print(f"dump {dtype} {name}: mean {statistics.mean(figures):.0f} tok/s "
                  f"(runs {min(figures):.0f}-{max(figures):.0f})")


if __name__ == "__main__":
    main()
