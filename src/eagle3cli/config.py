"""Pydantic config models, one per stage; they import nothing of the project.

Config flows one way: ``--config FILE`` → flags override → ``model_validate`` → library.
Every model forbids unknown keys and describes every field; constraints live in types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

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


VllmDtype = Literal["auto", "float32", "float16", "bfloat16", "float", "half"]


def _parse_temperature_mix(value: object) -> object:
    """Accept ``"0:4,0.3:1"`` (the CLI form) besides a mapping of temperature to weight."""
    if not isinstance(value, str):
        return value
    mix: dict[str, str] = {}
    for item in value.split(","):
        temperature, separator, weight = item.strip().partition(":")
        if not separator or not temperature or not weight:
            raise ValueError(f"'{item.strip()}' is not TEMPERATURE:WEIGHT (example: \"0:4,0.3:1,1.0:3\")")
        mix[temperature] = weight
    return mix


TemperatureMix = Annotated[
    dict[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]],
    BeforeValidator(_parse_temperature_mix),
    Field(min_length=1),
]


class SampleConfig(StageConfig):
    """``eagle3 sample``: regenerate the assistant turns of a chat dataset with the target model."""

    data: str = Field(description="Dataset: a .jsonl/.json/.parquet file, a directory of shards, a glob, or a hub dataset name (org/name[:split]).")
    output_dir: str = Field(description="Output folder: shards/ (the regenerated records), failed.jsonl, summary.json, config.json.")
    format: DataFormat = Field("auto", description="Record format; auto detects it per record from the keys.")
    shard_size: int = Field(50000, gt=0, description="Input records per shard; shards are named by their input index range.")
    server_urls: list[Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=list, description="OpenAI-compatible server base URLs (http://host:port); overrides host/base_port/num_servers.")
    host: str = Field("127.0.0.1", description="Host of the servers found by probing base_port + i.")
    base_port: int = Field(6000, gt=0, lt=65536, description="Port of the first server; servers are probed at base_port + i.")
    num_servers: int | None = Field(None, gt=0, description="Servers at base_port .. base_port + N - 1 (all must answer); default: probe until one does not answer.")
    model: str | None = Field(None, description="Served model name; default: the one model the first server lists at /v1/models.")
    api_key: SecretStr | None = Field(None, exclude=True, description="Bearer token for the servers (never written to config.json).")
    concurrency: int = Field(256, gt=0, description="Records in flight at once, across all servers.")
    max_tokens: int = Field(2048, gt=0, description="Token budget of each regenerated assistant turn.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature of every record (default 0: greedy) — or use temperature_mix.")
    temperature_mix: TemperatureMix | None = Field(None, description='Temperature drawn per record (seeded) with these weights, e.g. "0:4,0.3:1,1.0:3".')
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    seed: int = Field(0, description="Seed of the per-record temperature draw.")
    enable_thinking: bool = Field(False, description="Sent as chat_template_kwargs.enable_thinking (Qwen3 thinking mode; other templates ignore it).")
    on_bad_record: BadRecordPolicy = Field("error", description="error: stop at the first malformed record; skip: count and skip it.")
    drop_truncated: bool = Field(False, description="Leave out records whose answer hit max_tokens (counted in the summary).")
    num_samples: int | None = Field(None, gt=0, description="Sample only the first N valid records.")
    num_retries: int = Field(5, ge=0, description="Retries of a request after a timeout, connection error, 429 or 5xx (exponential backoff with jitter).")
    retry_backoff_s: float = Field(1.0, gt=0, description="First retry delay in seconds; doubles each retry (capped at 60 s), jittered by up to -50%.")
    request_timeout_s: float = Field(600.0, gt=0, description="Seconds to wait for one reply.")
    server_down_timeout_s: float = Field(120.0, gt=0, description="Stop the run (resumable) when no server has answered for this many seconds.")

    @model_validator(mode="after")
    def _one_temperature_setting(self) -> SampleConfig:
        if self.temperature is not None and self.temperature_mix is not None:
            raise ValueError("give temperature or temperature_mix, not both")
        return self


class ServeConfig(StageConfig):
    """``eagle3 serve``: one vLLM OpenAI-compatible server per GPU group."""

    target_model: str = Field(description="Model directory or hub id to serve.")
    num_servers: int | None = Field(None, gt=0, description="Servers to start; default: visible GPUs // gpus_per_server (1 without GPUs).")
    base_port: int = Field(6000, gt=0, lt=65536, description="Port of server 0; server i listens on base_port + i.")
    gpus_per_server: int = Field(1, gt=0, description="GPUs per server (CUDA_VISIBLE_DEVICES group; tensor parallel when above 1).")
    dtype: VllmDtype = Field("auto", description="Weight and activation dtype (float32 on CPU: bf16 gives garbage there).")
    max_model_len: int | None = Field(None, gt=0, description="Context length; default: the model's own.")
    host: str = Field("127.0.0.1", description="Address the servers bind to (0.0.0.0 exposes them to the network).")
    log_dir: str = Field("vllm-logs", description="Folder of the server logs, one file per server (stdout and stderr).")
    vllm_python: str | None = Field(None, description="Python interpreter that has vLLM installed; default: $EAGLE3_VLLM_PYTHON, else this Python.")
    speculative_config: dict[str, Any] | None = Field(None, description='Passed to vLLM as --speculative-config, e.g. {"method": "eagle3", "model": DRAFT, "num_speculative_tokens": 3}.')
    ready_timeout_s: float = Field(1800.0, gt=0, description="Seconds to wait for every server to answer /v1/models.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM server arguments, passed through unchanged.")



BenchMode = Literal["eagle", "baseline", "both"]
BenchDtype = Literal["auto", "float32", "bfloat16", "float16"]


class BenchConfig(StageConfig):
    """``eagle3 bench``: speculative decoding against plain decoding (AngelSlim spec_benchmark flags)."""

    base_model_path: str = Field(description="Target model directory or hub id.")
    eagle_model_path: str | None = Field(None, description="Draft checkpoint directory or hub id (needed for eagle/both).")
    model_id: str = Field(description="Name used in the answer file names and records.")
    bench_name: str = Field("mt_bench", description="mt_bench, alpaca, gsm8k or humaneval (any name with --bench-data).")
    bench_data: str | None = Field(None, description="A question.jsonl (question_id, category, turns); else the hub dataset of bench_name.")
    mode: BenchMode = Field("both", description="eagle, baseline, or both on the same questions.")
    output_dir: str = Field(description="Where answers, summary.json and the plot are written.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold (T > 0 only).")
    max_new_token: int = Field(1024, gt=0, description="Most tokens generated per turn.")
    total_token: int = Field(60, ge=2, description="Draft tree size: nodes verified per target forward (root included).")
    depth: int = Field(5, ge=1, description="Draft tree depth: draft tokens on the longest path.")
    top_k: int = Field(10, ge=1, description="Children expanded per node; 1 drafts a chain.")
    num_gpus_per_model: int = Field(1, ge=1, description="GPUs one model is spread over.")
    num_gpus_total: int = Field(1, ge=1, description="GPUs used in all; total/per-model workers share the questions.")
    max_gpu_memory: str | None = Field(None, description="Memory cap per GPU when a model spans several (e.g. 70GiB).")
    seed: int = Field(42, description="Random seed (question i uses seed + i).")
    question_begin: int | None = Field(None, description="First question index (Python slice start).")
    question_end: int | None = Field(None, description="Question index to stop before (Python slice end).")
    no_metrics: bool = Field(False, description="Skip the PNG plot.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    dtype: BenchDtype = Field("auto", description="Model dtype; auto = bfloat16 on CUDA, float32 on CPU.")
    chat_template: ChatTemplateName = Field("auto", description="qwen3, hunyuan, or auto (the tokenizer's own).")
    system_prompt: str | None = Field(None, description="System prompt for every question; none otherwise.")
    enable_thinking: bool = Field(False, description="Qwen3 thinking mode.")

    @model_validator(mode="after")
    def _draft_needed(self) -> "BenchConfig":
        if self.mode != "baseline" and not self.eagle_model_path:
            raise ValueError(f"--eagle-model-path is required for --mode {self.mode}")
        if self.num_gpus_total % self.num_gpus_per_model:
            raise ValueError("--num-gpus-total must be a multiple of --num-gpus-per-model")
        return self
