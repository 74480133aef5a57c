"""The target of a dump (a resolved :class:`~eagle3cli.target.spec.TargetSpec` and the draft
config naming the capture layers) and the manifest header that describes a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eagle3cli import __version__
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.draft.config import DraftConfig
from eagle3cli.dump.manifest import TENSOR_LAYOUT
from eagle3cli.dump.shard_file import FORMAT_NAME, FORMAT_VERSION
from eagle3cli.target.spec import TargetSpec, resolve_target


@dataclass(frozen=True)
class DumpTarget:
    """The resolved target and the draft config whose capture layers the dump records."""

    spec: TargetSpec
    draft: DraftConfig


def prepare_target(config: DumpHiddenConfig) -> DumpTarget:
    """Resolve the target (tokenizer checked against the chat template) and the draft config."""
    from eagle3cli.draft.derive import resolve_draft_config

    spec = resolve_target(
        config.target_model, trust_remote_code=config.trust_remote_code,
        chat_template=config.chat_template, enable_thinking=config.enable_thinking,
    )
    draft = resolve_draft_config(
        spec.config,
        draft_config_path=config.draft_config,
        draft_vocab_size=config.draft_vocab_size,
    )
    return DumpTarget(spec, draft)


def manifest_header(config: DumpHiddenConfig, target: DumpTarget) -> dict[str, Any]:
    """Everything the manifest says about the run, shards aside."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "eagle3cli_version": __version__,
        "target": {
            "model": config.target_model,
            "path": str(target.spec.directory.resolve()),
            "config_sha256": target.spec.config_sha256,
            "model_type": target.spec.config.get("model_type"),
            "hidden_size": target.spec.hidden_size,
            "num_hidden_layers": target.spec.num_layers,
            "vocab_size": target.spec.vocab_size,
        },
        "aux_layer_ids": list(target.draft.aux_layer_ids),
        "sglang_layer_ids": list(target.draft.sglang_layer_ids),
        "draft_vocab_size": target.draft.draft_vocab_size,
        "dtype": config.dtype,
        "backend": config.backend,
        "max_length": config.max_length,
        "chat_template": config.chat_template,
        "enable_thinking": config.enable_thinking,
        "system_prompt": config.system_prompt,
        "data": {
            "source": config.data,
            "format": config.format,
            "num_samples": config.num_samples,
            "on_bad_record": config.on_bad_record,
        },
        "shard_size": config.shard_size,
        "tensors": TENSOR_LAYOUT,
    }
