"""``train offline``: target states from ``dump-hidden`` shards; the target distribution from
``last_hidden`` and the target's ``lm_head``, read alone from its safetensors (the target is
never loaded whole).

Checked before training: the dump was made from this target (config hash and sizes), the
draft config's capture layers are the dumped ones (the dump's own draft config is the
default), an eval dump matches the training dump, and ``--chat-template`` / ``--train-data``
agree with the manifest when given. The vocabulary map is the dump's, or rebuilt exactly from
its per-shard token counts when ``--draft-vocab-size`` asks for another size.

``--stream`` trains on a dump that is still being written (:class:`GrowingDumpSource`): the
vocabulary map comes from the shards finished at the start, each epoch from those finished
when it starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from eagle3cli.config import OfflineTrainConfig
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.vocab import VocabMap
from eagle3cli.dump import HiddenStateDump, open_dump, open_growing_dump
from eagle3cli.dump.shard_file import FP8, HiddenSample, dequantize
from eagle3cli.errors import Eagle3Error
from eagle3cli.target.spec import TargetSpec
from eagle3cli.training.batches import attention_mask_for, pad_right
from eagle3cli.training.step import TargetBatch
from eagle3cli.training.trainer import RunContext, TrainingInputs, TrainSummary, train

logger = logging.getLogger(__name__)

# --verify-shards defaults (benchmarks/RESULTS.md, "Shard verification"): sha256 reads shards at
# ~1.3 GB/s here; the draft trains ~370 tokens/s on 2 CPU cores (SmolLM2) and ~20,000 tokens/s
# on one H200 (Llama-3.1-8B shape). Both scale with the tokens, so the cost of verifying
# relative to an epoch is bytes/token x training rate / hash rate, whatever the dump's size.
HASH_BYTES_PER_S = 1.3e9
TRAIN_TOKENS_PER_S = {"cpu": 370.0, "cuda": 20_000.0}
MAX_VERIFY_FRACTION = 0.1


class DumpSource:
    """Samples of a hidden-state dump (the first ``num_samples`` of them when given), read on
    demand (memory-mapped), optionally cropped."""

    def __init__(self, dump: HiddenStateDump, max_length: int | None, num_samples: int | None = None) -> None:
        self.dump = dump
        self.max_length = max_length
        self.limit = len(dump) if num_samples is None else min(num_samples, len(dump))

    @property
    def num_samples(self) -> int:
        return self.limit

    def batch(self, indices: list[int], device: torch.device) -> TargetBatch:
        samples = [self.dump.read_sample(index) for index in indices]
        crop = slice(0, self.max_length)
        return TargetBatch(
            input_ids=pad_right([sample.input_ids[crop].long() for sample in samples]).to(device),
            attention_mask=attention_mask_for([sample.input_ids[crop].numel() for sample in samples]).to(device),
            loss_mask=pad_right([sample.loss_mask[crop].bool() for sample in samples]).to(device),
            aux_hidden=states(samples, "aux_hidden", "aux_scale", crop, device),
            last_hidden=states(samples, "last_hidden", "last_scale", crop, device),
        )


class GrowingDumpSource(DumpSource):
    """``--stream``: a dump that ``dump-hidden`` may still be writing. Each epoch trains on the
    shards finished when it starts; the last epoch waits for all of them (a dump that stopped
    before finishing is an error then). An epoch's shards are named by index and sha256, so a
    process or a resume that finds another file under a name refuses it. With ``verify``, a
    shard's sha256 is checked when it joins."""

    POLL_S = 5.0

    def __init__(self, dump: HiddenStateDump, max_length: int | None, *, verify: bool) -> None:
        super().__init__(dump, max_length)
        self.verify = verify
        self.verified: set[tuple[int, str]] = set()

    @property
    def planned_num_samples(self) -> int:
        return self.dump.planned_num_samples

    def next_epoch(self, previous: list[Any] | None, *, last: bool) -> list[Any]:
        from eagle3cli.dump.reader import check_shard_file
        from eagle3cli.outputs import in_use

        directory = self.dump.directory
        waiting = False
        while True:
            # Whether dump-hidden runs, asked before reading the dump: it marks the dump complete
            # before it lets go of the folder, so one that finishes in between is read complete.
            running = in_use(directory)
            try:
                dump = open_growing_dump(directory)
            except Eagle3Error:
                if previous is None:
                    raise
                return previous  # a restarted dump rewrites its manifest: train on what the last epoch had
            if dump.complete or not last:
                break
            if not running:
                raise Eagle3Error(
                    f"the dump in {directory} stopped before finishing ({dump.num_shards} of "
                    f"{dump.manifest['planned']['num_shards']} shards), and the last epoch trains on all of them",
                    hint="rerun the same dump-hidden command to finish it; rerunning this training then resumes it",
                )
            if not waiting:
                logger.info("the last epoch waits for dump-hidden to finish %s (%d of %d shards written)",
                            directory, dump.num_shards, dump.manifest["planned"]["num_shards"])
                waiting = True
            time.sleep(self.POLL_S)
        num_shards = int(dump.manifest["planned"]["num_shards"]) if not dump.complete else dump.num_shards
        shards = [record for record in dump.shards if record.index < num_shards]
        for record in shards:
            if self.verify and (record.index, record.sha256) not in self.verified:
                check_shard_file(directory, record, verify_checksum=True)
                self.verified.add((record.index, record.sha256))
        return [[record.index, record.sha256] for record in shards]

    def use_epoch(self, key: list[Any]) -> None:
        dump = open_growing_dump(self.dump.directory)
        found = {(record.index, record.sha256): record for record in dump.shards}
        missing = [index for index, sha256 in key if (index, sha256) not in found]
        if missing:
            raise Eagle3Error(
                f"shard(s) {missing[:5]} of {dump.directory}, which this run trains on, are gone or were rewritten",
                hint="restore the dump this run started on, or rerun training with --no-resume",
            )
        self.dump = dataclasses.replace(dump, shards=tuple(found[(index, sha256)] for index, sha256 in key))
        self.limit = len(self.dump)


def states(samples: list[HiddenSample], name: str, scale_name: str, crop: slice, device: torch.device) -> torch.Tensor:
    """One hidden-state tensor of a batch, padded, on ``device``; a float8 dump's values travel
    as stored (half of bf16's bytes) and are decoded to bfloat16 there."""
    rows = [getattr(sample, name)[crop] for sample in samples]
    if rows[0].dtype != FP8:
        return pad_right(rows).to(device)
    values = pad_right([row.view(torch.uint8) for row in rows]).to(device).view(FP8)
    scales = pad_right([getattr(sample, scale_name)[crop] for sample in samples], 1.0).to(device)
    return dequantize(values, scales, torch.bfloat16)


def check_dump_target(dump: HiddenStateDump, target: TargetSpec) -> None:
    """Raise unless ``dump`` was made from ``target``."""
    made_from = dump.manifest["target"]
    problems = [
        f"{key} {made_from.get(key)} != the target's {target.config.get(key)}"
        for key in ("hidden_size", "vocab_size", "num_hidden_layers")
        if made_from.get(key) != target.config.get(key)
    ]
    if not problems and made_from.get("config_sha256") != target.config_sha256:
        problems.append("the target's config.json differs from the one the dump was made with (sha256)")
    if problems:
        raise Eagle3Error(
            f"hidden-state dump {dump.directory} was not made from target {target.directory} ({made_from.get('path')}): " + "; ".join(problems),
            hint="train with the dump's target (see its manifest.json), or dump again with this one",
        )


def offline_draft_config(config: OfflineTrainConfig, dump: HiddenStateDump, target_config: dict[str, Any]) -> DraftConfig:
    """The dump's draft config, the ``--init-draft``'s or ``--draft-config`` (whose capture layers
    must be the dumped ones)."""
    from eagle3cli.draft.derive import check_draft_against_target, resolve_draft_config
    from eagle3cli.training.draft_setup import init_draft_config

    if config.init_draft is not None and config.draft_config is None:
        draft_config = init_draft_config(config.init_draft, target_config, config.draft_vocab_size)
    elif config.draft_config is None:
        draft_config = dump.draft_config()
        if config.draft_vocab_size is not None:
            draft_config = dataclasses.replace(draft_config, draft_vocab_size=config.draft_vocab_size)
        check_draft_against_target(draft_config, target_config)
    else:
        draft_config = resolve_draft_config(
            target_config, draft_config_path=config.draft_config, draft_vocab_size=config.draft_vocab_size
        )
    if tuple(draft_config.aux_layer_ids) != dump.aux_layer_ids:
        raise Eagle3Error(
            f"the draft config captures layers {list(draft_config.aux_layer_ids)}, the dump {dump.directory} "
            f"holds layers {list(dump.aux_layer_ids)} (vLLM numbering)",
            hint="use the dump's draft_config.json, or dump again with this draft config",
        )
    return draft_config


def check_manifest_settings(config: OfflineTrainConfig, dump: HiddenStateDump) -> None:
    manifest = dump.manifest
    if config.chat_template is not None and config.chat_template != manifest.get("chat_template"):
        raise Eagle3Error(
            f"--chat-template {config.chat_template} differs from the dump's ({manifest.get('chat_template')})",
            hint="leave --chat-template out: the dump's token ids are already templated",
        )
    source = manifest.get("data", {}).get("source")
    if config.train_data is not None and source is not None and Path(config.train_data).resolve() != Path(source).resolve():
        logger.warning("--train-data %s is not the data the dump was made from (%s)", config.train_data, source)


def dump_vocab_map(dump: HiddenStateDump, draft_config: DraftConfig) -> VocabMap:
    """The dump's map, or one rebuilt from its per-shard counts: of another size, or from the
    shards finished so far when the dump is still being written."""
    from eagle3cli.draft.vocab import build_vocab_map
    from eagle3cli.dump.vocab_counts import total_loss_token_counts

    if dump.complete and int(dump.manifest["draft_vocab_size"]) == draft_config.draft_vocab_size:
        return dump.vocab_map()
    counts = total_loss_token_counts(dump.directory, dump.shards, draft_config.vocab_size)
    return build_vocab_map(counts, draft_config.draft_vocab_size)


def verification_cost(dump: HiddenStateDump, device_type: str) -> float:
    """Estimated time to sha256 every shard, as a fraction of one training epoch on ``device_type``."""
    bytes_per_token = sum(record.num_bytes for record in dump.shards) / max(dump.num_tokens, 1)
    return bytes_per_token * TRAIN_TOKENS_PER_S[device_type] / HASH_BYTES_PER_S


def should_verify(config: OfflineTrainConfig, dump: HiddenStateDump) -> bool:
    """``--verify-shards``, or by default: when hashing costs under 10 % of an epoch here."""
    if config.verify_shards is not None:
        return config.verify_shards
    return verification_cost(dump, "cuda" if torch.cuda.is_available() else "cpu") < MAX_VERIFY_FRACTION


@dataclasses.dataclass(frozen=True)
class CheckedDumps:
    """What an offline run trains from: the dumps, checked against the target, and the draft config."""

    target: TargetSpec
    train: HiddenStateDump
    eval: HiddenStateDump | None
    draft_config: DraftConfig


def open_checked_dumps(config: OfflineTrainConfig, *, verify: bool = False) -> CheckedDumps:
    """The training and eval dumps, checked against the target, and the draft config. With
    ``verify`` every shard's sha256 is checked (as :func:`should_verify` decides)."""
    from eagle3cli.target.spec import resolve_target
    from eagle3cli.target.weights import INDEX_FILE

    # the config and the weights files the head and embedding are read from; no tokenizer
    target = resolve_target(config.target_model, tokenizer=False, allow_patterns=["config.json", INDEX_FILE, "*.safetensors"])
    open_train = open_growing_dump if config.stream else open_dump
    train_dump = open_train(config.train_hidden)
    if verify and should_verify(config, train_dump) and not config.stream:  # streamed shards: checked as they join
        logger.info("verifying the sha256 of %d shard(s) in %s", len(train_dump.shards), train_dump.directory)
        train_dump = open_train(config.train_hidden, verify_checksums=True)
    check_dump_target(train_dump, target)
    check_manifest_settings(config, train_dump)
    draft_config = offline_draft_config(config, train_dump, target.config)
    eval_dump = None
    if config.eval_hidden is not None:
        eval_dump = open_dump(config.eval_hidden, verify_checksums=verify and should_verify(config, train_dump))
        check_dump_target(eval_dump, target)
        if eval_dump.aux_layer_ids != train_dump.aux_layer_ids:
            raise Eagle3Error(
                f"eval dump layers {list(eval_dump.aux_layer_ids)} differ from the training dump's {list(train_dump.aux_layer_ids)}"
            )
    return CheckedDumps(target, train_dump, eval_dump, draft_config)


def prepare_offline(config: OfflineTrainConfig, context: RunContext, checked: CheckedDumps | None = None) -> TrainingInputs:
    """The target's head and embedding on the run's device, and the dumps as sources
    (``checked``: :func:`open_checked_dumps`'s result, opened here when not given)."""
    from eagle3cli.target.weights import read_embed_tokens, read_final_norm, read_lm_head

    checked = checked or open_checked_dumps(config)
    target_dir, train_dump, draft_config = checked.target.directory, checked.train, checked.draft_config
    dtype = torch.bfloat16 if context.mixed_precision else torch.float32
    lm_head = read_lm_head(target_dir, config.lm_head_key, embed_key=config.embed_key).to(context.device, dtype)
    embed_tokens = read_embed_tokens(target_dir, config.embed_key).to(context.device, dtype)
    return TrainingInputs(
        draft_config=draft_config,
        embed_tokens=embed_tokens,
        lm_head=lm_head,
        train=(GrowingDumpSource(train_dump, config.max_length, verify=context.is_main_process and should_verify(config, train_dump))
               if config.stream else DumpSource(train_dump, config.max_length, config.num_samples)),
        eval=None if checked.eval is None else DumpSource(checked.eval, config.max_length),
        count_vocab_map=lambda: dump_vocab_map(train_dump, draft_config),
        train_data_sha256=growing_dump_sha256(train_dump) if config.stream else dump_data_sha256(train_dump, config.num_samples),
        final_norm=read_final_norm(target_dir, config.embed_key) if config.init_head_from_target else None,
        target_config=checked.target.config,
    )


def dump_data_sha256(dump: HiddenStateDump, num_samples: int | None) -> str:
    """Identifies the samples trained on: the shards' sha256s, and the prefix length when cut."""
    text = "\n".join(record.sha256 for record in dump.shards)
    if num_samples is not None and num_samples < len(dump):
        text += f"\nfirst {num_samples}"
    return hashlib.sha256(text.encode()).hexdigest()


def growing_dump_sha256(dump: HiddenStateDump) -> str:
    """Identifies a streamed dump by what decides its shards' contents (its shards change as it grows)."""
    from eagle3cli.dump.manifest import IDENTITY_KEYS, lookup

    settings = {key: lookup(dump.manifest, key) for key in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def train_offline(config: OfflineTrainConfig, *, on_step: Any = None) -> TrainSummary:
    """Train a draft on hidden-state dumps; outputs go to ``config.output_dir``."""
    return train(
        # a mismatched or corrupt dump fails before any heavy work (process 0 hashes the shards)
        config, config.output_dir, lambda is_main: open_checked_dumps(config, verify=is_main),
        lambda context, checked: prepare_offline(config, context, checked), on_step=on_step,
    )
