"""Pydantic config models, one per stage; they import nothing of the project.

Config flows one way: ``--config FILE`` → flags override → ``model_validate`` → library.
Every model forbids unknown keys and describes every field; constraints live in types.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DataFormat = Literal["auto", "sharegpt", "ultrachat", "openai"]
ChatTemplateName = Literal["qwen3", "hunyuan", "auto"]
BadRecordPolicy = Literal["error", "skip"]


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


class DataCheckConfig(StageConfig):
    """``eagle3 data check``: validate a chat dataset against a tokenizer and chat template."""

    data: str = Field(description="Dataset: a .jsonl/.json/.parquet file, a directory of shards, a glob, or a hub dataset name (org/name[:split]).")
    format: DataFormat = Field("auto", description="Record format; auto detects it per record from the keys.")
    tokenizer: str = Field(description="Tokenizer directory or hub id (usually the target model).")
    chat_template: ChatTemplateName = Field("auto", description="qwen3, hunyuan, or auto (the tokenizer's own chat_template).")
    max_length: int = Field(2048, gt=0, description="Token budget per sample; longer samples are truncated.")
    enable_thinking: bool = Field(False, description="Qwen3: render assistant turns as the thinking-enabled template does.")
    system_prompt: str | None = Field(None, description="System prompt to add (replacing the record's own); none is injected otherwise.")
    on_bad_record: BadRecordPolicy = Field("error", description="error: stop at the first malformed record; skip: count and skip it.")
    num_samples: int | None = Field(None, gt=0, description="Check only the first N valid records.")
    show: int = Field(0, ge=0, description="Print N samples with the loss-masked tokens highlighted.")
    trust_remote_code: bool = Field(False, description="Allow the tokenizer's own code from its repository to run.")
