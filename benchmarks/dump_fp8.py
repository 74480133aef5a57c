"""float8 hidden-state shards against bf16 on SmolLM2: disk, dump and training throughput, and
the quality of drafts trained from each (same data, same seed), next to the run-to-run noise
of two bf16 drafts of different seeds.

Works on a folder laid out as ``examples/smollm2/quickstart.sh`` leaves it (``target/``,
``split/train.jsonl``, ``split/heldout.jsonl``: the quickstart writes the split at the start of
its step 5); every cell resumes.

    OUT=runs/fp8 NUM_PROMPTS=400 HELD_OUT=40 MAX_TOKENS=256 bash examples/smollm2/quickstart.sh
    python benchmarks/dump_fp8.py --run runs/fp8 --precision fp32   # fp32 on a CPU without native bf16

The dumps of the training split are timed ``--repeats`` times, bf16 and float8 alternating (the
dump loop's tokens/s: forward, capture, quantisation, writes). Each draft trains ``--epochs``
epochs with a held-out evaluation per epoch (``best/`` = the best); held-out figures are from
``best/``, training-window ones the last logged steps. Bench τ: T = 0, one CPU tree, eagle mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_report import last_train_metrics, read_json  # noqa: E402
from tau_vs_data import eagle3  # noqa: E402

DTYPES = {"bf16": "bfloat16", "fp8": "float8_e4m3fn"}


def dump(args: argparse.Namespace, split: str, dtype: str, output: Path) -> float:
    """Dump one split in ``dtype``; the dump loop's tokens/s."""
    from eagle3cli.config import DumpHiddenConfig
    from eagle3cli.dump.runner import dump_hidden

    config = DumpHiddenConfig(data=str(args.run / "split" / f"{split}.jsonl"), target_model=str(args.run / "target"),
                              output_dir=output, dtype=dtype, device="cpu", chat_template="auto",
                              max_length=args.max_length, draft_vocab_size=args.draft_vocab, overwrite=True)
    return dump_hidden(config).tokens_per_s


def train(args: argparse.Namespace, cell: Path, hidden: Path, heldout: Path, seed: int) -> None:
    if (cell / "final" / "model.safetensors").is_file():
        return
    from eagle3cli.dump import open_dump

    steps_per_epoch = len(open_dump(str(hidden)))  # batch 1
    eagle3(
        "train", "offline", "--target-model", str(args.run / "target"), "--train-hidden", str(hidden), "--eval-hidden", str(heldout),
        "--output-dir", str(cell), "--num-epochs", str(args.epochs), "--eval-steps", str(steps_per_epoch),
        "--save-steps", str(steps_per_epoch), "--learning-rate", str(args.learning_rate), "--precision", args.precision,
        "--max-length", str(args.max_length), "--seed", str(seed), "--log-steps", "25",
    )


def bench_tau(args: argparse.Namespace, cell: Path, draft: Path) -> float:
    if not (cell / "summary.json").is_file():
        total, depth, top_k = args.tree.split("/")
        eagle3(
            "bench", "--base-model-path", str(args.run / "target"), "--eagle-model-path", str(draft), "--model-id", "fp8",
            "--bench-name", "mt_bench", "--question-end", str(args.questions), "--mode", "eagle", "--temperature", "0",
            "--max-new-token", str(args.max_new), "--total-token", total, "--depth", depth, "--top-k", top_k,
            "--device", "cpu", "--dtype", "float32", "--no-metrics", "--output-dir", str(cell),
        )
    return json.loads((cell / "summary.json").read_text())["modes"]["eagle"]["tau"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="quickstart folder with target/ and split/")
    parser.add_argument("--out", type=Path, help="default: RUN/fp8-vs-bf16")
    parser.add_argument("--repeats", type=int, default=2, help="timed dumps of the training split per dtype")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--precision", default="bf16", help="training precision (fp32 on a CPU without native bf16)")
    parser.add_argument("--draft-vocab", type=int, default=8192)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-new", type=int, default=128)
    parser.add_argument("--tree", default="16/3/4", help="total/depth/top-k of the bench tree")
    args = parser.parse_args()
    out = args.out or args.run / "fp8-vs-bf16"
    out.mkdir(parents=True, exist_ok=True)
    rates_path = out / "dump_rates.json"
    rates: dict[str, list[float]] = read_json(rates_path) or {name: [] for name in DTYPES}
    for round_index in range(args.repeats):
        for name, dtype in DTYPES.items():
            if len(rates[name]) > round_index:
                continue
            rates[name].append(dump(args, "train", dtype, out / f"hidden-{name}"))
            print(f"dump {name}: {rates[name][-1]:.0f} tok/s", file=sys.stderr, flush=True)
            rates_path.write_text(json.dumps(rates))
    for name, dtype in DTYPES.items():
        if read_json(out / f"heldout-{name}" / "manifest.json") is None:
            dump(args, "heldout", dtype, out / f"heldout-{name}")

    from eagle3cli.dump import open_dump

    rows: list[dict[str, Any]] = []
    for name, seed in (("bf16", 0), ("bf16", 1), ("fp8", 0)):
        cell = out / f"draft-{name}-seed{seed}"
        train(args, cell, out / f"hidden-{name}", out / f"heldout-{name}", seed)
        manifest = open_dump(str(out / f"hidden-{name}")).manifest
        best = read_json(cell / "best" / "eval_metrics.json") or {}
        window = last_train_metrics(cell / "metrics.jsonl") or {}
        rows.append({
            "shards": name, "seed": seed,
            "bytes_per_token_over_H": manifest["num_bytes"] / manifest["num_tokens"] / manifest["target"]["hidden_size"],
            "dump_tok_s": statistics.median(rates[name]), "dump_tok_s_range": [min(rates[name]), max(rates[name])],
            "train_tok_s": window.get("tokens_per_s"), "heldout_acc0": best.get("acc@0"),
            "heldout_sim_tau": best.get("sim_accept_len"), "train_acc0": window.get("acc@0"),
            "bench_tau": bench_tau(args, out / f"bench-{name}-seed{seed}", cell / "best"),
        })
    (out / "fp8_vs_bf16.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print("| shards | seed | bytes/token ÷ H | dump tok/s (median, range) | train tok/s | held-out acc@0 | held-out sim. τ | training-window acc@0 | mt_bench τ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        row = {key: float("nan") if value is None else value for key, value in row.items()}
        low, high = row["dump_tok_s_range"]
        print(f"| {row['shards']} | {row['seed']} | {row['bytes_per_token_over_H']:.2f} | {row['dump_tok_s']:.0f} ({low:.0f}–{high:.0f}) "
              f"| {row['train_tok_s']:.0f} | {row['heldout_acc0']:.3f} | {row['heldout_sim_tau']:.3f} "
              f"| {row['train_acc0']:.3f} | {row['bench_tau']:.3f} |")


if __name__ == "__main__":
    main()
