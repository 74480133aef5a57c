"""``data check``: read a dataset, tokenise it with the chat template, report what the draft
will be trained on (records, lengths, loss-mask coverage, truncation)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eagle3cli.config import DataCheckConfig
from eagle3cli.data.tokenize import TokenizedSample


@dataclass(frozen=True)
class MaskedSample:
    """One tokenised sample kept for display: its text as runs of equal loss mask."""

    record_id: str
    segments: list[tuple[str, bool]]


@dataclass
class DataCheckReport:
    """Counts and distributions over the checked records."""

    num_read: int = 0
    num_skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    num_truncated: int = 0
    num_without_loss_tokens: int = 0
    num_tokens: int = 0
    num_loss_tokens: int = 0
    lengths: list[int] = field(default_factory=list)
    samples: list[MaskedSample] = field(default_factory=list)

    @property
    def loss_fraction(self) -> float:
        return self.num_loss_tokens / self.num_tokens if self.num_tokens else 0.0

    def length_percentiles(self, quantiles: tuple[float, ...] = (0.5, 0.9, 0.99, 1.0)) -> dict[str, int]:
        """Nearest-rank percentiles of the token lengths (``p100`` is the maximum)."""
        ordered = sorted(self.lengths)
        return {f"p{round(q * 100)}": ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0 for q in quantiles}


def check_dataset(config: DataCheckConfig, *, on_record: Callable[[int], None] | None = None) -> DataCheckReport:
    """Tokenise every record of ``config.data`` and collect a :class:`DataCheckReport`.

    ``on_record(num_tokens)`` is called after each record (the CLI drives a progress bar).
    """
    from eagle3cli.chat_template import validate_template
    from eagle3cli.data.readers import read_conversations
    from eagle3cli.data.tokenize import tokenize_records
    from eagle3cli.target.hub import load_tokenizer

    tokenizer = load_tokenizer(config.target_model, trust_remote_code=config.trust_remote_code)
    validate_template(tokenizer, config.chat_template, enable_thinking=config.enable_thinking)
    reader = read_conversations(config.data, config, num_samples=config.num_samples)
    report = DataCheckReport()
    for sample in tokenize_records(reader, tokenizer, config):
        add_sample(report, sample, tokenizer, keep=len(report.samples) < config.show)
        if on_record is not None:
            on_record(len(sample.input_ids))
    report.num_read = reader.stats.num_read
    report.num_skipped = reader.stats.num_skipped
    report.skipped_by_reason = dict(reader.stats.skipped_by_reason)
    return report


def add_sample(report: DataCheckReport, sample: TokenizedSample, tokenizer: Any, *, keep: bool) -> None:
    """Fold one tokenised sample into the report (and keep it for display if asked)."""
    num_loss = sum(sample.loss_mask)
    report.lengths.append(len(sample.input_ids))
    report.num_tokens += len(sample.input_ids)
    report.num_loss_tokens += num_loss
    report.num_truncated += int(sample.truncated)
    report.num_without_loss_tokens += int(num_loss == 0)
    if keep:
        report.samples.append(MaskedSample(sample.sample_id, masked_segments(sample.input_ids, sample.loss_mask, tokenizer)))


def masked_segments(input_ids: list[int], loss_mask: list[int], tokenizer: Any) -> list[tuple[str, bool]]:
    """Decode runs of tokens with the same mask value together (so multi-byte characters
    split across tokens decode whole)."""
    segments: list[tuple[str, bool]] = []
    start = 0
    for end in range(1, len(input_ids) + 1):
        if end == len(input_ids) or loss_mask[end] != loss_mask[start]:
            segments.append((tokenizer.decode(input_ids[start:end]), bool(loss_mask[start])))
            start = end
    return segments
