"""The training loop shared by ``train online`` and ``train offline``.

The two commands differ only in the :class:`TrainingInputs` they hand over — where target
states come from (:class:`BatchSource`), the target's ``lm_head`` and embedding, and how the
vocabulary map is counted. Everything else is here:

1. accelerate (DDP by default, FSDP with ``fsdp``; ``accelerate launch`` or ``torchrun``),
2. the draft, its frozen vocabulary map (process 0 computes it once) and embedding,
3. resume from the newest complete checkpoint (weights, optimizer, scheduler, RNG, data position),
4. per micro-batch: target rows, all-reduced loss normalizers, the shared unrolled step,
5. per optimizer step: clip, step, schedule; log / eval (best/) / save at their intervals,
6. at the end: eval, a step checkpoint and ``final/``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from eagle3cli.config import TrainHyperParameters
from eagle3cli.configfile import write_resolved_config
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import VocabMap
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, share_tree, writing
from eagle3cli.outputs import claimed_output_dir
from eagle3cli.training import checkpoints
from eagle3cli.training.accelerate_setup import bf16_training, make_accelerator, make_scheduler, prepare, reset_accelerate_state, trained_precision
from eagle3cli.training.batches import epoch_order, eval_batches, local_micro_batch, num_micro_batches
from eagle3cli.training.draft_setup import build_draft, check_head_init, init_vocab_map, load_init_draft, shared_vocab_map
from eagle3cli.training.metrics import NUM_METRIC_ROWS, summarize
from eagle3cli.training.reporting import Reporter, drop_metrics_after
from eagle3cli.training.step import TargetBatch, TargetHead, TargetRows, num_trained_positions, target_rows, unrolled_step

logger = logging.getLogger("eagle3cli.training")
Resolved = TypeVar("Resolved")

RUN_RECORD_FILE = "run.json"
# Settings a resumed run may change: they decide what is logged, evaluated and kept, not what
# is trained — and paths whose content is checked another way (the same folder written
# relative or absolute; the training samples' sha256 in run.json).
CHANGEABLE_ON_RESUME = frozenset({
    "resume", "log_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "run_name",
    "eval_data", "eval_hidden", "verify_shards", "trust_remote_code", "output_dir", "train_data", "train_hidden",
})


class BatchSource(Protocol):
    """Samples with their target states: the dump reader or the target in the loop."""

    @property
    def num_samples(self) -> int: ...

    def batch(self, indices: list[int], device: torch.device) -> TargetBatch:
        """The samples at ``indices``, right-padded, with their target states on ``device``."""
        ...


@runtime_checkable
class GrowingSource(BatchSource, Protocol):
    """A source whose samples may grow between epochs (a dump that is still being written):
    each epoch trains on what process 0 finds at its start; checkpoints keep that choice."""

    @property
    def planned_num_samples(self) -> int:
        """Samples expected once it stops growing (sizes the learning-rate schedule)."""
        ...

    def next_epoch(self, previous: list[Any] | None, *, last: bool) -> list[Any]:
        """Process 0: what the next epoch trains on, as JSON-able ids (the shards finished
        now; for the ``last`` epoch all of them, waiting for them if need be). ``previous``:
        the epoch before's, to fall back on while the source cannot be read."""
        ...

    def use_epoch(self, key: list[Any]) -> None:
        """Every process: train on ``key``'s samples from now on (also what a resume restores)."""
        ...


@dataclass
class RunContext:
    """What input preparation may need from the run: device and process roles."""

    device: torch.device
    is_main_process: bool
    wait_for_everyone: Callable[[], None]
    mixed_precision: bool


@dataclass
class TrainingInputs:
    draft_config: DraftConfig
    embed_tokens: torch.Tensor  # [vocab, hidden], the target's
    lm_head: torch.Tensor | None  # [vocab, target hidden], the target's, on the run's device (None once split)
    train: BatchSource
    eval: BatchSource | None
    count_vocab_map: Callable[[], VocabMap]  # called on process 0 when no map exists yet
    train_data_sha256: str  # identifies the training samples: a resume must train on the same
    final_norm: torch.Tensor | None = None  # [hidden], the target's, when the draft head starts from the target's
    target_config: dict[str, Any] | None = None  # fills what an --init-draft of another layout leaves out


@dataclass
class TrainSummary:
    output_dir: Path
    global_step: int
    total_steps: int
    final_dir: Path
    best_dir: Path | None
    best_sim_accept_len: float | None
    is_main_process: bool
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)


class DraftTrainingModule(nn.Module):
    """The draft behind one ``forward`` (what DDP/FSDP wrap): the unrolled step."""

    def __init__(self, draft: Eagle3DraftModel, config: TrainHyperParameters) -> None:
        super().__init__()
        self.draft = draft
        # FSDP keeps float32 parameters; bf16 compute is autocast here, as accelerate does for DDP
        self.autocast = config.fsdp and bf16_training(config)
        self.ttt_length = config.ttt_length
        self.loss_decay = config.loss_decay
        self.hidden_noise_std = config.hidden_noise_std
        self.hidden_noise_scale = config.hidden_noise_scale

    def forward(
        self, batch: TargetBatch, rows: TargetRows, normalizers: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(batch.input_ids.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            output = unrolled_step(
                self.draft, batch, rows, ttt_length=self.ttt_length, loss_decay=self.loss_decay,
                normalizers=normalizers, hidden_noise_std=self.hidden_noise_std if self.training else 0.0,
                hidden_noise_scale=self.hidden_noise_scale,
            )
        return output.loss, output.metric_sums


@dataclass
class Run:
    """The live objects of a run, for the loop itself (:func:`training_loop`); the helpers it
    calls take only what they use."""

    config: TrainHyperParameters
    output_dir: Path
    accelerator: Any
    module: nn.Module
    optimizer: Any
    scheduler: Any
    inputs: TrainingInputs
    draft_config: DraftConfig
    target_head: TargetHead
    state: checkpoints.TrainerState
    total_steps: int
    cursor: EpochCursor
    reporter: Reporter


def train(
    config: TrainHyperParameters,
    output_dir: Path,
    resolve_inputs: Callable[[bool], Resolved],
    prepare_inputs: Callable[[RunContext, Resolved], TrainingInputs],
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainSummary:
    """Train a draft; ``on_step(step, total)`` is called on process 0 after each optimizer step.

    ``resolve_inputs(is_main_process)`` runs once the output folder is claimed, before anything
    heavy: it resolves the target and checks the data, so a mistake fails fast (process 0 also
    hashes the shards there); ``prepare_inputs(context, resolved)`` then loads what training
    needs on the run's device."""
    is_main = int(os.environ.get("RANK", "0")) == 0  # known before accelerate starts
    try:
        with claimed_output_dir(output_dir, "train", is_main=is_main):
            resolved = resolve_inputs(is_main)
            run = start_run(config, output_dir, lambda context: prepare_inputs(context, resolved))
            train_metrics, eval_metrics = training_loop(run, on_step)
            run.accelerator.end_training()
    finally:
        reset_accelerate_state()
    best = run.output_dir / checkpoints.BEST_DIR
    return TrainSummary(
        output_dir=run.output_dir, global_step=run.state.global_step, total_steps=run.total_steps,
        final_dir=run.output_dir / checkpoints.FINAL_DIR, best_dir=best if best.is_dir() else None,
        best_sim_accept_len=run.state.best_sim_accept_len, is_main_process=run.accelerator.is_main_process,
        train_metrics=train_metrics, eval_metrics=eval_metrics,
    )


def start_run(config: TrainHyperParameters, output_dir: Path, prepare_inputs: Callable[[RunContext], TrainingInputs]) -> Run:
    """Steps 1–3: accelerator, inputs, draft, optimizer, scheduler, resume."""
    accelerator = make_accelerator(config, output_dir)
    if accelerator.is_main_process:
        if not config.resume:
            checkpoints.remove_run_outputs(output_dir)
        checkpoints.remove_incomplete(output_dir)
    accelerator.wait_for_everyone()
    # Every process checks (the same files, the same verdict), so none waits at a barrier for one that stopped.
    check_resumed_settings(config, output_dir)
    context = RunContext(accelerator.device, accelerator.is_main_process, accelerator.wait_for_everyone, bf16_training(config))
    inputs = prepare_inputs(context)
    if config.fc_norm:  # the flag turns it on; a --draft-config that has it keeps it
        inputs.draft_config = dataclasses.replace(inputs.draft_config, fc_norm=True)
    if config.init_head_from_target:
        check_head_init(inputs.draft_config, inputs.final_norm)
    # read and checked once, on every process before any waits for another
    init = None if config.init_draft is None else load_init_draft(config.init_draft, inputs.draft_config, inputs.target_config, inputs.embed_tokens)
    run_record = {"num_processes": accelerator.num_processes, "train_data_sha256": inputs.train_data_sha256}
    if isinstance(inputs.train, GrowingSource):  # the schedule's size: process 0's estimate, kept for a resume
        from accelerate.utils import broadcast_object_list

        previous = previous_record(output_dir, RUN_RECORD_FILE) if config.resume else None
        planned = (previous or {}).get("planned_num_samples", inputs.train.planned_num_samples)
        run_record["planned_num_samples"] = broadcast_object_list([planned])[0]
    check_resumed_data(config, output_dir, run_record)
    if accelerator.is_main_process:
        write_resolved_config(config, output_dir)
        atomic_write_json(output_dir / RUN_RECORD_FILE, run_record)
    accelerator.wait_for_everyone()
    count = inputs.count_vocab_map if init is None else functools.partial(init_vocab_map, init)  # a fine-tune keeps its map
    vocab_map = shared_vocab_map(output_dir, inputs.draft_config, accelerator, count)
    target_head = TargetHead.split(inputs.lm_head, vocab_map.t2d.to(inputs.lm_head.device))
    inputs.lm_head = None  # the split holds its rows; the full matrix (~1 GiB for an 8B target) is let go
    head = (target_head.draft_rows, inputs.final_norm) if config.init_head_from_target else None
    draft = build_draft(inputs.draft_config, vocab_map, inputs.embed_tokens, seed=config.seed, init=init, target_head=head)
    del init
    module = DraftTrainingModule(draft, config)
    parameters = [parameter for parameter in module.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    planned = run_record.get("planned_num_samples", inputs.train.num_samples)
    micro_batches = num_micro_batches(planned, config.per_device_batch_size, accelerator.num_processes)
    total_steps = planned_steps(config, micro_batches)
    scheduler = make_scheduler(config.lr_scheduler, optimizer, int(config.warmup_ratio * total_steps), total_steps)
    module, optimizer = prepare(accelerator, module, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    torch.manual_seed(config.seed + 1 + accelerator.process_index)  # noise; restored on resume
    state = load_newest_checkpoint(accelerator, output_dir) if config.resume else checkpoints.TrainerState()
    if state.global_step:
        if accelerator.is_main_process:
            drop_metrics_after(output_dir, state.global_step)
        logger.info("resumed from step %d (epoch %d, micro-batch %d)", state.global_step, state.epoch, state.micro_batch)
    if config.report_to != "none":
        accelerator.init_trackers(config.run_name or output_dir.resolve().name, config=tracker_config(config))
    reporter = Reporter(output_dir, accelerator, total_steps, accelerator.is_main_process)
    cursor = EpochCursor(inputs.train, state, config, accelerator, micro_batches)
    cursor.enter_epoch(state.epoch_data)
    return Run(config, output_dir, accelerator, module, optimizer, scheduler, inputs, inputs.draft_config,
               target_head, state, total_steps, cursor, reporter)


def previous_record(output_dir: Path, name: str) -> dict[str, Any] | None:
    """A JSON record of the run being resumed (``config.json``, ``run.json``), or None when
    there is no checkpoint to resume or no such record."""
    path = output_dir / name
    if not checkpoints.complete_checkpoints(output_dir) or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Eagle3Error(f"{path} is unreadable ({error}), so this run cannot be checked against the one it would resume",
                          hint="rerun with --no-resume to start over") from error
    return data if isinstance(data, dict) else None


def refuse_changes(changed: list[str], output_dir: Path) -> None:
    if changed:
        raise Eagle3Error(
            f"{output_dir} holds a run made with other settings ({'; '.join(changed)}); resuming it would not train as asked",
            hint="rerun with --no-resume to start over in this folder, or with the old values to continue it",
        )


def written_as_now(annotation: Any, value: Any) -> Any:
    """A value from an older ``config.json`` as this version writes it (a path field's
    ``runs/x/`` as ``runs/x``); as read where this version would refuse it."""
    adapter = TypeAdapter(annotation)
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError:
        return value


def check_resumed_settings(config: TrainHyperParameters, output_dir: Path) -> None:
    """A resume must continue the same run: refuse when a setting outside
    :data:`CHANGEABLE_ON_RESUME` differs from the run's ``config.json`` (kept unchanged)."""
    previous = previous_record(output_dir, "config.json") if config.resume else None
    if previous is None:
        return
    current = config.model_dump(mode="json")
    fields = type(config).model_fields
    # a setting added after the run started is read as its default (what that run trained with)
    defaults = {key: field.default for key, field in fields.items() if not field.is_required()}
    before = {key: written_as_now(fields[key].annotation, previous.get(key, defaults.get(key))) for key in current}
    as_trained = lambda key, value: trained_precision(value) if key == "precision" else value  # noqa: E731 ("auto": bf16 or fp32 here)
    refuse_changes([
        f"{key}: {json.dumps(before[key])} -> {json.dumps(value)}"
        for key, value in current.items()
        if key not in CHANGEABLE_ON_RESUME and as_trained(key, before[key]) != as_trained(key, value)
    ], output_dir)


def check_resumed_data(config: TrainHyperParameters, output_dir: Path, run_record: dict[str, Any]) -> None:
    """A resume must also see the same processes and training samples (``run.json``)."""
    previous = previous_record(output_dir, RUN_RECORD_FILE) if config.resume else None
    if previous is None:
        return
    names = {"num_processes": "number of processes", "train_data_sha256": "training data (sha256 of the samples)",
             "planned_num_samples": "planned samples of the streamed dump"}
    refuse_changes([
        f"{names[key]}: {previous.get(key)} -> {value}" for key, value in run_record.items() if previous.get(key) != value
    ], output_dir)


def planned_steps(config: TrainHyperParameters, micro_batches_per_epoch: int) -> int:
    steps_per_epoch = micro_batches_per_epoch // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise Eagle3Error(
            f"the training data is too small for one optimizer step ({micro_batches_per_epoch} micro-batches per epoch, "
            f"{config.gradient_accumulation_steps} per step)",
            hint="lower --per-device-batch-size or --gradient-accumulation-steps, or add data",
        )
    total = steps_per_epoch * config.num_epochs
    return total if config.max_steps is None else min(total, config.max_steps)


def load_newest_checkpoint(accelerator: Any, output_dir: Path) -> checkpoints.TrainerState:
    """Load the newest checkpoint that reads back whole (weights, optimizer, scheduler, RNG); a
    damaged one (a torn or corrupt file) is reported and the one before it is tried."""
    found = checkpoints.complete_checkpoints(output_dir)
    for path in reversed(found):
        try:
            state = checkpoints.TrainerState.read(path / checkpoints.TRAINER_STATE_FILE)
            accelerator.load_state(str(path / checkpoints.TRAINING_STATE_DIR))
            return state
        except Exception as error:  # torch.load, safetensors and json fail in many ways; all mean "unreadable"
            logger.warning("checkpoint %s cannot be read (%s: %s); trying the one before it", path, type(error).__name__, error)
    if found:
        raise Eagle3Error(
            f"none of the {len(found)} checkpoint(s) in {output_dir / checkpoints.CHECKPOINTS_DIR} can be read",
            hint="rerun with --no-resume to start over",
        )
    return checkpoints.TrainerState()


def tracker_config(config: TrainHyperParameters) -> dict[str, Any]:
    """Hyper-parameters as tracker-friendly scalars (TensorBoard hparams take no None)."""
    return {key: "none" if value is None else value for key, value in config.model_dump(mode="json").items()}


def training_loop(run: Run, on_step: Callable[[int, int], None] | None) -> tuple[dict[str, float], dict[str, float]]:
    """Steps 4–6."""
    config, state, accelerator = run.config, run.state, run.accelerator
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    window = Window(accelerator, run.scheduler, run.reporter, state, run.total_steps, config)
    last_saved = state.global_step if state.global_step else None
    last_evaluated = None

    def save() -> None:
        save_step_checkpoint(accelerator, run.module, run.draft_config, run.output_dir, state, keep=config.save_total_limit)

    while state.global_step < run.total_steps and not run.cursor.last_epoch_done():
        window.add(*optimizer_step(accelerator, run.module, run.optimizer, run.scheduler, run.cursor, run.target_head, config))
        state.global_step += 1
        if on_step is not None and accelerator.is_main_process:
            on_step(state.global_step, run.total_steps)
        if state.global_step % config.log_steps == 0 or state.global_step == run.total_steps:
            train_metrics = window.flush()
        if config.eval_steps and state.global_step % config.eval_steps == 0:
            eval_metrics, last_evaluated = evaluate_and_keep_best(run), state.global_step
        if config.save_steps and state.global_step % config.save_steps == 0:
            save()
            last_saved = state.global_step
    if last_evaluated != state.global_step:
        eval_metrics = evaluate_and_keep_best(run)
    if last_saved != state.global_step:
        save()
    write_named_draft(accelerator, run.module, run.draft_config, run.output_dir / checkpoints.FINAL_DIR)
    return train_metrics, eval_metrics


class EpochCursor:
    """Where the training data stands: the epoch and micro-batch (kept in the trainer state, so
    a resume continues there) and, for a growing source, the samples of the current epoch."""

    def __init__(self, source: BatchSource, state: checkpoints.TrainerState, config: TrainHyperParameters,
                 accelerator: Any, micro_batches_per_epoch: int) -> None:
        self.source, self.state, self.config, self.accelerator = source, state, config, accelerator
        self.micro_batches_per_epoch = micro_batches_per_epoch

    def enter_epoch(self, key: list[Any] | None) -> None:
        """A growing source's samples for the current epoch: ``key`` when resuming it, else what
        process 0 finds now (sent to every process, so all train on the same samples; an error
        there is raised on every process)."""
        source, config, state = self.source, self.config, self.state
        if not isinstance(source, GrowingSource):
            return
        if key is None:
            from accelerate.utils import broadcast_object_list

            found: Any = None
            if self.accelerator.is_main_process:
                try:
                    found = source.next_epoch(state.epoch_data, last=state.epoch >= config.num_epochs - 1)
                except Eagle3Error as error:
                    found = {"error": str(error)}
            found = broadcast_object_list([found])[0]
            if isinstance(found, dict):
                raise Eagle3Error(found["error"])
            key = found
        source.use_epoch(key)
        state.epoch_data = key
        self.micro_batches_per_epoch = num_micro_batches(source.num_samples, config.per_device_batch_size, self.accelerator.num_processes)
        if self.micro_batches_per_epoch < config.gradient_accumulation_steps:
            raise Eagle3Error(
                f"epoch {state.epoch} would train on {source.num_samples} samples, fewer than one optimizer step "
                f"({config.gradient_accumulation_steps} micro-batches of {config.per_device_batch_size * self.accelerator.num_processes})",
                hint="start training once the dump has written more shards, or lower the batch size",
            )
        logger.info("epoch %d trains on %d samples (of %d planned)", state.epoch, source.num_samples, source.planned_num_samples)

    def epoch_consumed(self) -> bool:
        """The current epoch's optimizer steps are all taken (the next micro-batch starts a new one)."""
        per_epoch = self.micro_batches_per_epoch
        return self.state.micro_batch >= per_epoch - per_epoch % self.config.gradient_accumulation_steps

    def last_epoch_done(self) -> bool:
        """A growing source ends with its epochs, not with the planned steps: its earlier epochs,
        over part of the data, took fewer steps than planned."""
        return isinstance(self.source, GrowingSource) and self.state.epoch >= self.config.num_epochs - 1 and self.epoch_consumed()

    def next_batch(self, device: torch.device) -> TargetBatch:
        """This process's next micro-batch; advances the data position."""
        state, config = self.state, self.config
        if self.epoch_consumed():
            state.epoch, state.micro_batch = state.epoch + 1, 0
            self.enter_epoch(None)
        order = epoch_order(self.source.num_samples, config.seed, state.epoch)
        indices = local_micro_batch(
            order, state.micro_batch, per_device_batch_size=config.per_device_batch_size,
            world_size=self.accelerator.num_processes, rank=self.accelerator.process_index,
        )
        state.micro_batch += 1
        return self.source.batch(indices, device)


def optimizer_step(
    accelerator: Any, module: nn.Module, optimizer: Any, scheduler: Any, cursor: EpochCursor, target_head: TargetHead,
    config: TrainHyperParameters,
) -> tuple[torch.Tensor, int]:
    """``gradient_accumulation_steps`` micro-batches, then one optimizer step.
    Returns the local metric sums and real token count."""
    sums = torch.zeros(NUM_METRIC_ROWS, config.ttt_length, dtype=torch.float64, device=accelerator.device)
    num_tokens = 0
    for _ in range(config.gradient_accumulation_steps):
        batch = cursor.next_batch(accelerator.device)
        rows = target_rows(batch.last_hidden, batch.loss_mask, target_head)
        # Normalise by the trained positions of all processes: the loss (and its gradient,
        # which DDP averages) equals that of the whole global batch on one process.
        normalizers = accelerator.reduce(num_trained_positions(rows.trained, config.ttt_length), "sum")
        with accelerator.accumulate(module):
            loss, step_sums = module(batch, rows, normalizers)
            accelerator.backward(loss * accelerator.num_processes)
        sums += step_sums.detach()
        num_tokens += int(batch.attention_mask.sum())
    accelerator.clip_grad_norm_(module.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return sums, num_tokens


class Window:
    """Metric sums and tokens since the last log line; reduced across processes at each log."""

    def __init__(self, accelerator: Any, scheduler: Any, reporter: Reporter, state: checkpoints.TrainerState,
                 total_steps: int, config: TrainHyperParameters) -> None:
        self.accelerator, self.scheduler, self.reporter, self.state = accelerator, scheduler, reporter, state
        self.total_steps, self.ttt_length, self.loss_decay = total_steps, config.ttt_length, config.loss_decay
        self.started = time.perf_counter()
        self.first_step = state.global_step
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(NUM_METRIC_ROWS, self.ttt_length, dtype=torch.float64, device=self.accelerator.device)
        self.num_tokens = 0
        self.window_started = time.perf_counter()

    def add(self, sums: torch.Tensor, num_tokens: int) -> None:
        self.sums += sums
        self.num_tokens += num_tokens

    def flush(self) -> dict[str, float]:
        accelerator = self.accelerator
        sums = accelerator.reduce(self.sums, "sum")
        tokens = accelerator.reduce(torch.tensor([float(self.num_tokens)], device=accelerator.device), "sum")
        now = time.perf_counter()
        step = self.state.global_step
        metrics = summarize(sums, self.loss_decay)
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        metrics["tokens_per_s"] = float(tokens[0]) / max(now - self.window_started, 1e-9)
        seconds_per_step = (now - self.started) / max(step - self.first_step, 1)
        metrics["eta_s"] = seconds_per_step * (self.total_steps - step)
        metrics["epoch"] = float(self.state.epoch)
        self.reporter.report("train", step, metrics)
        self.reset()
        return metrics


@torch.no_grad()
def evaluate(
    accelerator: Any, module: nn.Module, source: BatchSource, target_head: TargetHead, config: TrainHyperParameters
) -> dict[str, float]:
    """Eval metrics over every sample of ``source`` (all processes)."""
    batch_size = config.per_device_batch_size
    num_batches = math.ceil(source.num_samples / (batch_size * accelerator.num_processes))
    batches = list(eval_batches(source.num_samples, batch_size, world_size=accelerator.num_processes, rank=accelerator.process_index))
    sums = torch.zeros(NUM_METRIC_ROWS, config.ttt_length, dtype=torch.float64, device=accelerator.device)
    module.eval()
    for index in range(num_batches):  # the same number of forwards on every process (FSDP gathers)
        indices = batches[index] if index < len(batches) else [0]
        batch = source.batch(indices, accelerator.device)
        rows = target_rows(batch.last_hidden, batch.loss_mask, target_head)
        _, step_sums = module(batch, rows, None)
        if index < len(batches):
            sums += step_sums
    module.train()
    return summarize(accelerator.reduce(sums, "sum"), config.loss_decay)


def evaluate_and_keep_best(run: Run) -> dict[str, float]:
    """Evaluate (when there is eval data), report, and write ``best/`` on a new best."""
    if run.inputs.eval is None:
        return {}
    metrics = evaluate(run.accelerator, run.module, run.inputs.eval, run.target_head, run.config)
    state = run.state
    run.reporter.report("eval", state.global_step, metrics)
    if state.best_sim_accept_len is None or metrics["sim_accept_len"] > state.best_sim_accept_len:
        state.best_sim_accept_len, state.best_step = metrics["sim_accept_len"], state.global_step
        write_named_draft(run.accelerator, run.module, run.draft_config, run.output_dir / checkpoints.BEST_DIR,
                          {"eval_metrics.json": {"step": state.global_step, **metrics}})
    return metrics


def write_named_draft(
    accelerator: Any, module: nn.Module, draft_config: DraftConfig, directory: Path, extra: dict[str, Any] | None = None
) -> None:
    """``best/`` or ``final/``: gathered on every process (FSDP), written by process 0."""
    module_state = accelerator.get_state_dict(module)
    if accelerator.is_main_process:
        checkpoints.write_draft(directory, module_state, draft_config, extra)
    accelerator.wait_for_everyone()


def save_step_checkpoint(
    accelerator: Any, module: nn.Module, draft_config: DraftConfig, output_dir: Path, state: checkpoints.TrainerState,
    *, keep: int | None,
) -> None:
    """``checkpoint-STEP/``: accelerate's state (model, optimizer, scheduler, RNG) staged and
    renamed into place, the draft and the trainer state beside it; the oldest beyond ``keep`` go."""
    step = state.global_step
    if accelerator.is_main_process:
        checkpoints.begin_step_checkpoint(output_dir, step)
    accelerator.wait_for_everyone()
    staging = checkpoints.staging_dir(output_dir, step)
    with writing(staging):
        accelerator.save_state(str(staging / checkpoints.TRAINING_STATE_DIR))
        share_tree(staging / checkpoints.TRAINING_STATE_DIR)
    module_state = accelerator.get_state_dict(module)
    if accelerator.is_main_process:
        path = checkpoints.finish_step_checkpoint(output_dir, step, module_state, draft_config, state, keep=keep)
        logger.info("checkpoint saved: %s", path)
    accelerator.wait_for_everyone()
