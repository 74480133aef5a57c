"""How much data a draft needs: held-out accuracy and bench τ against training tokens.

Trains one draft per fraction of a run's training dump (the first N samples: the corpus is
shuffled, so every prefix is a mixed slice), all with the same held-out dump, the same
hyper-parameters and the same epochs rule (``--epochs`` epochs, one held-out evaluation per
epoch, ``best/`` = the best of them), then benches each ``best/`` at T = 0 with one CPU tree
on each dataset. Works on the folder ``benchmarks/e2e_smollm2.sh`` leaves (``target/``,
``hidden/``, ``heldout/``); every cell resumes (a finished draft or bench is not redone).

    python benchmarks/tau_vs_data.py --run runs/e2e-smollm2 --fractions 0.125 0.25 0.5 1

Prints a Markdown table (held-out and training-window accuracy side by side), writes
``OUT/tau_vs_data.json`` and a PNG (default ``benchmarks/tau_vs_data.png``). The vocabulary
map is the dump's (counted over the whole dump) for every fraction.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_report import last_train_metrics, read_json  # noqa: E402


def eagle3(*args: str) -> None:
    """Run one ``eagle3`` command in this interpreter's environment; stop the script if it fails."""
    command = [sys.executable, "-m", "eagle3cli", *args]
    print("$ eagle3 " + " ".join(args), file=sys.stderr, flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"failed: eagle3 {' '.join(args)}")


def prefix_tokens(dump_dir: Path, num_samples: int, max_length: int | None) -> tuple[int, int]:
    """Tokens and loss-mask tokens of the first ``num_samples`` samples (cropped as trained)."""
    from eagle3cli.dump import open_dump

    dump = open_dump(str(dump_dir))
    tokens = trained = 0
    for index in range(num_samples):
        sample = dump.read_sample(index)
        tokens += min(sample.input_ids.numel(), max_length or sample.input_ids.numel())
        trained += int(sample.loss_mask[:max_length].sum())
    return tokens, trained


def train_cell(args: argparse.Namespace, cell: Path, num_samples: int) -> None:
    if (cell / "final" / "model.safetensors").is_file():
        return
    steps_per_epoch = max(num_samples // args.batch_size, 1)
    eagle3(
        "train", "offline", "--target-model", str(args.run / "target"), "--train-hidden", str(args.run / "hidden"),
        "--eval-hidden", str(args.run / "heldout"), "--num-samples", str(num_samples), "--output-dir", str(cell),
        "--num-epochs", str(args.epochs), "--eval-steps", str(steps_per_epoch), "--save-steps", str(steps_per_epoch), "--per-device-batch-size", str(args.batch_size),
        "--learning-rate", str(args.learning_rate), "--warmup-ratio", str(args.warmup_ratio), "--draft-vocab-size", str(args.draft_vocab), "--ttt-length", str(args.ttt_length),
        "--precision", args.precision, "--max-length", str(args.max_length), "--log-steps", str(min(25, steps_per_epoch)),
        *shlex.split(args.train_args),
    )


def bench_tau(args: argparse.Namespace, cell: Path, dataset: str, draft: Path) -> float:
    """τ of ``draft`` at T = 0 (eagle mode only: speed-up needs a baseline timed back to back,
    which is ``benchmarks/e2e_smollm2.sh``'s job)."""
    if not (cell / "summary.json").is_file():
        total, depth, top_k = args.tree.split("/")
        eagle3(
            "bench", "--base-model-path", str(args.run / "target"), "--eagle-model-path", str(draft), "--model-id", "tau-vs-data",
            "--bench-name", dataset, "--question-end", str(args.questions), "--mode", "eagle", "--temperature", "0",
            "--max-new-token", str(args.max_new), "--total-token", total, "--depth", depth, "--top-k", top_k,
            "--device", "cpu", "--dtype", "float32", "--no-metrics", "--output-dir", str(cell),
        )
    return json.loads((cell / "summary.json").read_text())["modes"]["eagle"]["tau"]


def plot(rows: list[dict[str, Any]], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tokens = [row["trained_tokens"] for row in rows]
    figure, (accuracy, tau) = plt.subplots(1, 2, figsize=(10, 4))
    accuracy.plot(tokens, [row["heldout_acc0"] for row in rows], "o-", label="held-out acc@0")
    accuracy.plot(tokens, [row["train_acc0"] for row in rows], "s--", label="training-window acc@0")
    accuracy.set(xscale="log", xlabel="trained tokens (loss-mask tokens per epoch)", ylabel="first-position accuracy")
    accuracy.legend()
    for dataset in datasets:
        benched = [(row["trained_tokens"], row[f"tau_{dataset}"]) for row in rows if f"tau_{dataset}" in row]
        tau.plot(*zip(*benched), "o-", label=f"{dataset} τ (T=0)")
    tau.set(xscale="log", xlabel="trained tokens (loss-mask tokens per epoch)", ylabel="τ (tokens per target forward)")
    tau.legend()
    for axis in (accuracy, tau):
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # the log axis' minor labels overlap
    figure.suptitle("SmolLM2-135M-Instruct draft: quality against data")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="folder with target/, hidden/ and heldout/ (e2e_smollm2.sh's OUT)")
    parser.add_argument("--out", type=Path, help="default: RUN/tau-vs-data")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-ratio", type=float, default=0.01)
    parser.add_argument("--draft-vocab", type=int, default=8192)
    parser.add_argument("--ttt-length", type=int, default=7)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--train-args", default="", help='more train offline flags for every cell, as one value: --train-args="--init-head-from-target" (with "=": argparse reads a lone value that starts with "--" as a flag)')
    parser.add_argument("--datasets", nargs="+", default=["mt_bench", "gsm8k"])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-new", type=int, default=256)
    parser.add_argument("--tree", default="16/3/4", help="total/depth/top-k of the bench tree")
    parser.add_argument("--png", type=Path, default=Path(__file__).resolve().parent / "tau_vs_data.png")
    parser.add_argument("--with-rows", type=Path, nargs="*", default=[],
                        help="tau_vs_data.json of other runs (e.g. a larger regeneration, same held-out dump) joined to the table and plot")
    args = parser.parse_args()
    out = args.out or args.run / "tau-vs-data"
    from eagle3cli.dump import open_dump

    num_dumped = len(open_dump(str(args.run / "hidden")))
    rows = []
    for fraction in sorted(args.fractions):
        num_samples = max(1, round(fraction * num_dumped))
        cell = out / f"n{num_samples}"
        train_cell(args, cell, num_samples)
        best = read_json(cell / "best" / "eval_metrics.json") or {}
        window = last_train_metrics(cell / "metrics.jsonl") or {}
        tokens, trained = prefix_tokens(args.run / "hidden", num_samples, args.max_length)
        row = {"fraction": fraction, "samples": num_samples, "tokens": tokens, "trained_tokens": trained,
               "heldout_acc0": best.get("acc@0"), "heldout_sim_tau": best.get("sim_accept_len"), "best_step": best.get("step"),
               "train_acc0": window.get("acc@0"), "train_tokens_per_s": window.get("tokens_per_s")}
        for dataset in args.datasets:
            row[f"tau_{dataset}"] = bench_tau(args, cell / f"bench-{dataset}", dataset, cell / "best")
        rows.append(row)
    (out / "tau_vs_data.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    for other in args.with_rows:
        rows += json.loads(other.read_text())["rows"]
    rows.sort(key=lambda row: row["trained_tokens"])
    plot(rows, args.datasets, args.png)
    columns = "".join(f" {d} τ |" for d in args.datasets)
    print(f"| samples | tokens | trained tokens | held-out acc@0 | training-window acc@0 | held-out sim. τ |{columns}")
    print("|" + "---|" * (6 + len(args.datasets)))
    for row in rows:
        cells = "".join(f" {row[f'tau_{d}']:.2f} |" if f"tau_{d}" in row else " – |" for d in args.datasets)
        print(f"| {row['samples']} ({row['fraction']:g}) | {row['tokens']:,} | {row['trained_tokens']:,} | "
              f"{row['heldout_acc0']:.3f} | {row['train_acc0']:.3f} | {row['heldout_sim_tau']:.2f} |{cells}")
    print(f"\nplot: {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
