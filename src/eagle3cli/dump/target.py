"""The target of a dump — folder, config and its hash, draft config (capture layers), tokenizer —
and the manifest header that describes a run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle3cli import __version__
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.draft.config import DraftConfig
from eagle3cli.dump.manifest import TENSOR_LAYOUT
from eagle3cli.dump.shard_file import FORMAT_NAME, FORMAT_VERSION


@dataclass(frozen=True)
class DumpTarget:
    """The resolved target: folder, config (and its hash), capture layers, tokenizer."""

    directory: Path
    config: dict[str, Any]
    config_sha256: str
    draft: DraftConfig
    tokenizer: Any

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])


def prepare_target(config: DumpHiddenConfig) -> DumpTarget:
    """Resolve the target folder, draft config and tokenizer; check the chat template."""
    from eagle3cli.chat_template import validate_template
    from eagle3cli.draft.derive import read_target_config, resolve_draft_config
    from eagle3cli.hub import load_tokenizer, resolve_model_dir

    directory = resolve_model_dir(config.target_model)
    target_config = read_target_config(directory)
    draft = resolve_draft_config(
        target_config,
        draft_config_path=None if config.draft_config is None else Path(config.draft_config),
        draft_vocab_size=config.draft_vocab_size,
    )
    tokenizer = load_tokenizer(str(directory), trust_remote_code=config.trust_remote_code)
    validate_template(tokenizer, config.chat_template, enable_thinking=config.enable_thinking)
    config_sha256 = hashlib.sha256((directory / "config.json").read_bytes()).hexdigest()
    return DumpTarget(directory, target_config, config_sha256, draft, tokenizer)


def manifest_header(config: DumpHiddenConfig, target: DumpTarget) -> dict[str, Any]:
    """Everything the manifest says about the run, shards aside."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "eagle3cli_version": __version__,
        "target": {
            "model": config.target_model,
            "path": str(target.directory.resolve()),
            "config_sha256": target.config_sha256,
            "model_type": target.config.get("model_type"),
            "hidden_size": target.hidden_size,
            "num_hidden_layers": target.config["num_hidden_layers"],
            "vocab_size": target.vocab_size,
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
