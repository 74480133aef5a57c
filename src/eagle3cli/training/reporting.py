"""What a training run tells (process 0 only): one fixed-format line per logging step,
``metrics.jsonl`` (one JSON object per log or eval), and the chosen tracker.

The line::

    step 00120/05000 | loss 1.2345 | acc@0 0.512 | sim_τ 2.31 | lr 3.0e-04 | tok/s 12345 | eta 0:12:34
"""

from __future__ import annotations

import datetime
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_text, writing

logger = logging.getLogger("eagle3cli.training")

METRICS_FILE = "metrics.jsonl"


def log_line(step: int, total_steps: int, metrics: dict[str, float], *, prefix: str = "step") -> str:
    """The fixed-format line for ``metrics`` (train: lr/tok/s/eta present; eval: absent)."""
    width = max(5, len(str(total_steps)))
    parts = [
        f"{prefix} {step:0{width}d}/{total_steps:0{width}d}",
        f"loss {metrics['loss']:.4f}",
        f"acc@0 {metrics['acc@0']:.3f}",
        f"sim_τ {metrics['sim_accept_len']:.2f}",
    ]
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.1e}")
    if "tokens_per_s" in metrics:
        parts.append(f"tok/s {metrics['tokens_per_s']:.0f}")
    if "eta_s" in metrics:
        eta = metrics["eta_s"]
        parts.append(f"eta {datetime.timedelta(seconds=int(eta)) if math.isfinite(eta) else '?'}")
    return " | ".join(parts)


@dataclass
class Reporter:
    """Process 0's outlet: the log line, ``metrics.jsonl`` and the accelerate tracker."""

    output_dir: Path
    accelerator: object  # accelerate.Accelerator (trackers initialised when report_to != none)
    total_steps: int
    enabled: bool

    def report(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        """``kind`` is ``train`` or ``eval``; only process 0 writes."""
        if not self.enabled:
            return
        logger.info(log_line(step, self.total_steps, metrics, prefix="step" if kind == "train" else "eval"))
        line = json.dumps({"kind": kind, "step": step, **metrics}) + "\n"
        with writing(self.output_dir / METRICS_FILE), (self.output_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(line)  # one write of a whole line: a crash leaves at most a torn last line
        self.accelerator.log({f"{kind}/{name}": value for name, value in metrics.items()}, step=step)  # type: ignore[attr-defined]


def read_metrics(output_dir: Path) -> list[dict[str, float]]:
    """Every record of ``metrics.jsonl``; a last line torn by a crash is left out."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            if number == len(lines):
                logger.warning("%s: its last line was cut off (a crash while logging); it is left out", path)
                break
            raise Eagle3Error(f"{path} line {number} is not JSON", hint="delete the line, or rerun with --no-resume") from None
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def drop_metrics_after(output_dir: Path, step: int) -> None:
    """On resume: forget records of steps past the checkpoint (a killed run logged them;
    the resumed run logs them again) and a torn last line; rewritten atomically."""
    path = Path(output_dir) / METRICS_FILE
    if path.is_file():
        records = [record for record in read_metrics(output_dir) if record["step"] <= step]
        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def tracker_name(report_to: str) -> str | None:
    """The accelerate tracker for ``report_to``; checks its package is installed."""
    import importlib.util

    if report_to == "none":
        return None
    package = "tensorboard" if report_to == "tensorboard" else "wandb"
    if importlib.util.find_spec(package) is None and not (report_to == "tensorboard" and importlib.util.find_spec("tensorboardX")):
        raise Eagle3Error(f"--report-to {report_to} needs the {package} package", hint=f"pip install {package}")
    return report_to
