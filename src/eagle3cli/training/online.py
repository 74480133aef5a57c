"""``train online``: the target runs in the loop (frozen, no grad) and gives, per batch, the
three capture-layer states (hooks on the draft config's layers) and its final hidden state.

The conversations are tokenised once up front with the chat template (samples without a
loss-masked token are left out, as ``dump-hidden`` does); the vocabulary map counts their
loss-masked tokens.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from eagle3cli.config import OnlineTrainConfig
from eagle3cli.data.tokenize import TokenizedSample
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.vocab import VocabMap, build_vocab_map
from eagle3cli.target.spec import TargetSpec
from eagle3cli.training.batches import attention_mask_for, pad_right
from eagle3cli.training.step import TargetBatch
from eagle3cli.training.trainer import RunContext, TrainingInputs, TrainSummary, train

logger = logging.getLogger(__name__)


class OnlineSource:
    """Tokenised samples whose target states come from a forward of the target per batch."""

    def __init__(self, samples: list[TokenizedSample], target: nn.Module, aux_layer_ids: tuple[int, ...]) -> None:
        self.samples = samples
        self.target = target
        self.aux_layer_ids = aux_layer_ids

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def batch(self, indices: list[int], device: torch.device) -> TargetBatch:
        from eagle3cli.target.capture import capture_hidden_states

        chosen = [self.samples[index] for index in indices]
        input_ids = pad_right([torch.tensor(sample.input_ids) for sample in chosen]).to(device)
        attention_mask = attention_mask_for([len(sample.input_ids) for sample in chosen]).to(device)
        with torch.no_grad():
            states = capture_hidden_states(
                self.target, input_ids, aux_layer_ids=self.aux_layer_ids, attention_mask=attention_mask.long()
            )
        return TargetBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            loss_mask=pad_right([torch.tensor(sample.loss_mask, dtype=torch.bool) for sample in chosen]).to(device),
            aux_hidden=states.aux_hidden,
            last_hidden=states.last_hidden,
        )


def tokenize_data(config: OnlineTrainConfig, tokenizer: Any, source: str, num_samples: int | None) -> list[TokenizedSample]:
    """Every conversation of ``source`` with at least one loss-masked token."""
    from eagle3cli.data.readers import read_conversations
    from eagle3cli.data.tokenize import tokenize_records
    from eagle3cli.errors import Eagle3Error

    reader = read_conversations(source, config, num_samples=num_samples)
    tokenized = list(tokenize_records(reader, tokenizer, config))
    samples = [sample for sample in tokenized if sample.has_loss]
    if len(samples) < len(tokenized):
        logger.warning("%s: %d conversations without a loss-masked token left out", source, len(tokenized) - len(samples))
    if not samples:
        raise Eagle3Error(f"{source} holds no conversation with an assistant token to train on")
    return samples


def samples_sha256(samples: list[TokenizedSample]) -> str:
    """A digest of the tokenised samples (ids and loss masks, in order)."""
    import hashlib

    digest = hashlib.sha256()
    for sample in samples:
        ids = torch.tensor(sample.input_ids, dtype=torch.int64).numpy().tobytes()
        digest.update(ids + torch.tensor(sample.loss_mask, dtype=torch.bool).numpy().tobytes() + b"|")
    return digest.hexdigest()


def count_loss_tokens(samples: list[TokenizedSample], vocab_size: int) -> torch.Tensor:
    """``[vocab]`` int64 counts of loss-masked token ids."""
    tokens = [token for sample in samples for token, masked in zip(sample.input_ids, sample.loss_mask) if masked]
    return torch.bincount(torch.tensor(tokens, dtype=torch.int64), minlength=vocab_size)


def resolve_online(config: OnlineTrainConfig) -> tuple[TargetSpec, DraftConfig]:
    """The target and the draft config (the ``--init-draft``'s own, ``--draft-config`` or one
    derived from the target), then the tokenizer checked against the chat template."""
    from eagle3cli.chat_template import validate_template
    from eagle3cli.draft.derive import resolve_draft_config
    from eagle3cli.target.spec import resolve_target
    from eagle3cli.training.draft_setup import init_draft_config

    spec = resolve_target(config.target_model, trust_remote_code=config.trust_remote_code)
    if config.init_draft is not None and config.draft_config is None:
        draft_config = init_draft_config(config.init_draft, spec.config, config.draft_vocab_size)
    else:
        draft_config = resolve_draft_config(
            spec.config,
            draft_config_path=config.draft_config,
            draft_vocab_size=config.draft_vocab_size,
        )
    validate_template(spec.tokenizer, config.chat_template, enable_thinking=config.enable_thinking)
    return spec, draft_config


def prepare_online(
    config: OnlineTrainConfig, context: RunContext, resolved: tuple[TargetSpec, DraftConfig] | None = None
) -> TrainingInputs:
    """Tokenised data, the target on the run's device, its lm_head and embedding (``resolved``:
    :func:`resolve_online`'s result, resolved here when not given)."""
    from eagle3cli.target.capture import base_model
    from eagle3cli.target.loading import load_target

    spec, draft_config = resolved or resolve_online(config)
    train_samples = tokenize_data(config, spec.tokenizer, config.train_data, config.num_samples)
    eval_samples = None if config.eval_data is None else tokenize_data(config, spec.tokenizer, config.eval_data, None)
    dtype = torch.bfloat16 if context.mixed_precision else torch.float32
    target = load_target(spec.directory, dtype=dtype, device=context.device, trust_remote_code=config.trust_remote_code)
    target.requires_grad_(False)
    embed_tokens = target.get_input_embeddings().weight.detach()
    lm_head = target.get_output_embeddings().weight.detach()

    def count_vocab_map() -> VocabMap:
        return build_vocab_map(count_loss_tokens(train_samples, draft_config.vocab_size), draft_config.draft_vocab_size)

    aux_layer_ids = tuple(draft_config.aux_layer_ids)
    return TrainingInputs(
        draft_config=draft_config,
        embed_tokens=embed_tokens,
        lm_head=lm_head,
        train=OnlineSource(train_samples, target, aux_layer_ids),
        eval=None if eval_samples is None else OnlineSource(eval_samples, target, aux_layer_ids),
        count_vocab_map=count_vocab_map,
        train_data_sha256=samples_sha256(train_samples),
        final_norm=base_model(target).norm.weight.detach() if config.init_head_from_target else None,
        target_config=spec.config,
    )


def train_online(config: OnlineTrainConfig, *, on_step: Any = None) -> TrainSummary:
    """Train a draft with the target in the loop; outputs go to ``config.output_dir``."""
    return train(
        config, config.output_dir, lambda _: resolve_online(config),  # a bad target or draft config fails first
        lambda context, resolved: prepare_online(config, context, resolved), on_step=on_step,
    )
