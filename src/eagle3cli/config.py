"""Pydantic config models, one per stage; they import nothing of the project.

Config flows one way: ``--config FILE`` → flags override → ``model_validate`` → library.
Every model forbids unknown keys and describes every field; constraints live in types.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

DataFormat = Literal["auto", "sharegpt", "ultrachat", "openai"]
ChatTemplateName = Literal["qwen3", "hunyuan", "auto"]
BadRecordPolicy = Literal["error", "skip"]


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


class ChatSettings(BaseModel):
    """How conversations become tokens: the chat template, its options and the token budget.
    Stage configs that tokenise conversations include these fields (flat: the flags and
    config-file keys are ``chat_template``, ``max_length``, ...) and are passed whole where
    conversations are rendered."""

    chat_template: ChatTemplateName = Field("auto", description="qwen3, hunyuan, or auto (the tokenizer's own chat_template).")
    max_length: int = Field(2048, gt=0, description="Token budget per sample; longer samples are truncated.")
    enable_thinking: bool = Field(False, description="Qwen3: render assistant turns as the thinking-enabled template does.")
    system_prompt: str | None = Field(None, description="System prompt to add (replacing the record's own); none is injected otherwise.")


class TargetRef(BaseModel):
    """Which target a stage loads: a folder or hub id, and whether its repository's own code may
    run. Included flat (like ChatSettings) by the stages that load a target from its name alone."""

    target_model: str = Field(description="Target model directory or hub id.")
    trust_remote_code: bool = Field(False, description="Allow the model's (or its tokenizer's) own code from its repository to run.")


class RecordSettings(BaseModel):
    """How the records of a dataset are read: their format and what a malformed one does.
    Stage configs that read conversations include these fields (flat, like ChatSettings) and
    are passed whole to :func:`eagle3cli.data.readers.read_conversations`."""

    format: DataFormat = Field("auto", description="Record format; auto detects it per record from the keys.")
    on_bad_record: BadRecordPolicy = Field("error", description="error: stop at the first malformed record; skip: count and skip it.")


class InspectConfig(StageConfig):
    """``eagle3 inspect``: check a draft checkpoint as vLLM and SGLang would load it."""

    draft_dir: str = Field(description="Draft folder or hub id, in any layout eagle3 convert reads.")
    target_model: str | None = Field(None, description="Target folder or hub id: also check sizes, vocabulary and layer ids against it (and fill what a foreign layout leaves out).")


DraftLayout = Literal["eagle3", "speculators", "modelopt"]


class ConvertConfig(StageConfig):
    """``eagle3 convert``: a draft of any layout → eagle3, speculators or ModelOpt, checked by a read-back."""

    draft_dir: str = Field(description="Source draft folder or hub id (eagle3, EAGLE, SpecForge, AngelSlim, speculators or ModelOpt layout).")
    to: DraftLayout = Field(description="Layout to write: eagle3 (vLLM + SGLang), speculators (vllm serve DRAFT), modelopt.")
    output_dir: Path = Field(description="Where to write the converted draft.")
    target_model: str | None = Field(None, description="Target folder or hub id: fills what the source lacks (capture layers, vocabulary size) and is the speculators verifier.")
    num_speculative_tokens: int = Field(3, gt=0, description="speculators only: the draft length vllm serve DRAFT uses.")
    overwrite: bool = Field(False, description="Replace an existing output directory.")


GgufDtype = Literal["float32", "bfloat16", "float16"]


class ConvertGgufConfig(StageConfig):
    """``eagle3 convert-gguf``: a GGUF file → an HF model directory."""

    gguf_file: Path = Field(description="The .gguf file.")
    output_dir: Path = Field(description="Where to write the HF model directory.")
    dtype: GgufDtype = Field("float32", description="dtype of the de-quantised weights.")
    overwrite: bool = Field(False, description="Replace an existing output directory.")


class DataCheckConfig(StageConfig, TargetRef, ChatSettings, RecordSettings):
    """``eagle3 data check``: validate a chat dataset against a tokenizer and chat template."""

    data: str = Field(description="Dataset: a .jsonl/.json/.parquet file, a directory of shards, a glob, or a hub dataset name (org/name[:split]).")
    num_samples: int | None = Field(None, gt=0, description="Check only the first N valid records.")
    show: int = Field(0, ge=0, description="Print N samples with the loss-masked tokens highlighted.")


DeviceChoice = Literal["auto", "cpu", "cuda"]
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


class SampleConfig(StageConfig, RecordSettings):
    """``eagle3 sample``: regenerate the assistant turns of a chat dataset with the target model."""

    data: str = Field(description="Dataset: a .jsonl/.json/.parquet file, a directory of shards, a glob, or a hub dataset name (org/name[:split]).")
    output_dir: Path = Field(description="Output folder: shards/ (the regenerated records), failed.jsonl, summary.json, config.json.")
    shard_size: int = Field(50000, gt=0, description="Input records per shard; shards are named by their input index range.")
    num_answers: int = Field(1, gt=0, description="Answers per input record (the OpenAI n), each its own record with id ID#k and its own temperature draw and seed; needs sampling (a temperature above 0 or a mix).")
    backend: Literal["vllm", "hf"] = Field("vllm", description="vllm: OpenAI-compatible servers (eagle3 serve); hf: the target runs in this process with transformers, continuously batched (no server).")
    target_model: str | None = Field(None, description="hf backend: the target model directory or hub id.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="hf backend: the target's dtype; auto is bfloat16 on a GPU or a CPU with native bf16 (benchmarks/sample_backends.py), else float32.")
    device: DeviceChoice = Field("auto", description="hf backend: auto is cuda when available, else cpu.")
    batch_size: int = Field(128, gt=0, description="hf backend: rows decoded together (continuous batching; lower it if memory runs short).")
    trust_remote_code: bool = Field(False, description="hf backend: allow the model's own code from its repository to run.")
    server_urls: list[Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=list, description="OpenAI-compatible server base URLs (http://host:port); overrides host/base_port/num_servers.")
    host: str = Field("127.0.0.1", description="Host of the servers found by probing base_port + i.")
    base_port: int = Field(6000, gt=0, lt=65536, description="Port of the first server; servers are probed at base_port + i.")
    num_servers: int | None = Field(None, gt=0, description="Servers at base_port .. base_port + N - 1 (all must answer); default: probe until one does not answer.")
    model: str | None = Field(None, description="Served model name; default: the one model the first server lists at /v1/models.")
    api_key: SecretStr | None = Field(None, exclude=True, description="Bearer token for the servers (never written to config.json); default $OPENAI_API_KEY.")
    concurrency: int = Field(256, gt=0, description="Records in flight at once, across all servers.")
    max_tokens: int = Field(2048, gt=0, description="Token budget of each regenerated assistant turn.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature of every record (default 0: greedy) — or use temperature_mix.")
    temperature_mix: TemperatureMix | None = Field(None, description='Temperature drawn per record (seeded) with these weights, e.g. "0:4,0.3:1,1.0:3".')
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    seed: int = Field(0, description="Seed of the per-record temperature draw and of each record's sampling seed sent to the server (reproducible answers).")
    enable_thinking: bool = Field(False, description="Sent as chat_template_kwargs.enable_thinking (Qwen3 thinking mode; other templates ignore it).")
    drop_truncated: bool = Field(False, description="Leave out records whose answer hit max_tokens (counted in the summary).")
    num_samples: int | None = Field(None, gt=0, description="Sample only the first N valid records.")
    num_retries: int = Field(5, ge=0, description="Retries of a request after a timeout, connection error, 429 or 5xx (exponential backoff with jitter).")
    retry_backoff: float = Field(1.0, gt=0, description="First retry delay in seconds; doubles each retry (capped at 60 s), jittered by up to -50%.")
    request_timeout: float = Field(600.0, gt=0, description="Seconds to wait for one reply.")
    server_down_timeout: float = Field(120.0, gt=0, description="Seconds without any server answering after which the run stops (resumable).")

    @model_validator(mode="after")
    def _one_temperature_setting(self) -> SampleConfig:
        if self.temperature is not None and self.temperature_mix is not None:
            raise ValueError("give temperature or temperature_mix, not both")
        if self.num_answers > 1 and not self.temperature and not any(self.temperature_mix or {}):
            raise ValueError("num_answers above 1 needs sampling: greedy answers (temperature 0) are all the same; give a temperature or a temperature_mix with one above 0")
        if self.backend == "hf" and self.target_model is None:
            raise ValueError("backend hf needs target_model (the model to run in this process)")
        if self.backend == "vllm" and self.target_model is not None:
            raise ValueError("target_model is for backend hf; vLLM servers serve their own model (pick a served name with model)")
        return self


def _parse_json_object(value: object) -> object:
    """Accept a JSON object as text (the CLI form) besides a mapping."""
    if not isinstance(value, str):
        return value
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object, e.g. {"method": "eagle3", "model": "DRAFT"}')
    return parsed


class ServeConfig(StageConfig):
    """``eagle3 serve``: one vLLM OpenAI-compatible server per GPU group."""

    target_model: str = Field(description="Model directory or hub id to serve.")
    num_servers: int | None = Field(None, gt=0, description="Servers to start; default: visible GPUs // gpus_per_server (1 without GPUs).")
    base_port: int = Field(6000, gt=0, lt=65536, description="Port of server 0; server i listens on base_port + i.")
    gpus_per_server: int = Field(1, gt=0, description="GPUs per server (CUDA_VISIBLE_DEVICES group; tensor parallel when above 1).")
    dtype: VllmDtype = Field("auto", description="Weight and activation dtype (float32 on CPU: bf16 gives garbage there).")
    max_model_len: int | None = Field(None, gt=0, description="Context length; default: the model's own.")
    host: str = Field("127.0.0.1", description="Address the servers bind to (0.0.0.0 exposes them to the network).")
    log_dir: Path = Field("vllm-logs", description="Folder of the server logs, one file per server (stdout and stderr).")
    vllm_python: str | None = Field(None, description="Python interpreter that has vLLM installed; default: $EAGLE3_VLLM_PYTHON, else this Python.")
    speculative_config: Annotated[dict[str, Any] | None, BeforeValidator(_parse_json_object)] = Field(None, description='JSON passed to vLLM as --speculative-config, e.g. {"method": "eagle3", "model": DRAFT, "num_speculative_tokens": 3}.')
    ready_timeout: float = Field(1800.0, gt=0, description="Seconds to wait for every server to answer /v1/models.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM server arguments, passed through unchanged.")


DumpDtype = Literal["bfloat16", "float16", "float32", "float8_e4m3fn"]
DUMP_BACKENDS = ("hf", "vllm")


def _check_dump_backend(value: object) -> object:
    """A clear message for a backend other than hf and vllm (sglang, for instance)."""
    if isinstance(value, str) and value not in DUMP_BACKENDS:
        raise ValueError(f"backend '{value}' is not supported; use hf (transformers) or vllm (vLLM's extract_hidden_states)")
    return value


class DumpHiddenConfig(StageConfig, TargetRef, ChatSettings, RecordSettings):
    """``eagle3 dump-hidden``: the target's hidden states for offline training, as safetensors shards."""

    data: str = Field(description="Dataset: a .jsonl/.json/.parquet file, a directory of shards, a glob, or a hub dataset name (org/name[:split]).")
    output_dir: Path = Field(description="Output folder: shards/, manifest.json, vocab_map.safetensors, draft_config.json, config.json.")
    backend: Annotated[Literal["hf", "vllm"], BeforeValidator(_check_dump_backend)] = Field("hf", description="hf: the target in this process (transformers); vllm: vLLM's extract_hidden_states (one prefill per sample; Llama/Qwen/Mistral/HunYuan targets).")
    vllm_python: str | None = Field(None, description="vllm backend: Python with vLLM installed; default $EAGLE3_VLLM_PYTHON, else this Python.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm backend: tensor-parallel size of each process's engine (several processes: data parallel).")
    draft_config: Path | None = Field(None, description="Draft config file naming the capture layers; default: derived from the target ([2, N//2, N-3]).")
    draft_vocab_size: int | None = Field(None, gt=0, description="Draft vocabulary size of the vocab map; default: the draft config's (32000 capped at the target vocabulary).")
    dtype: DumpDtype = Field("bfloat16", description="Dtype of the stored hidden states and of the target forward; float8_e4m3fn stores them with a float32 scale per token and capture layer (4H + 21 bytes per token against bf16's 8H + 5; the target runs in bfloat16). On a CPU without native bf16 a half-precision dump runs the target in float32 (2.8x faster there) and rounds the states.")
    batch_tokens: int | None = Field(None, gt=0, description="Token budget of one forward batch, padding included (a longer sample runs alone); default: 16384 on a GPU, 2048 on a CPU (2.4x the tokens/s of 16384 there).")
    shard_size: int = Field(128, gt=0, description="Samples per shard (by position in the data); shards are the unit of resume and of work per process.")
    num_samples: int | None = Field(None, gt=0, description="Dump only the first N valid records.")
    device: DeviceChoice = Field("auto", description="auto: cuda (this process's local GPU) when available, else cpu.")
    overwrite: bool = Field(False, description="Delete an existing dump in output_dir (also one made with other settings) and start over.")
    force: bool = Field(False, description="Start even when the estimated output size exceeds the free disk space.")


TrainPrecision = Literal["auto", "bf16", "fp32"]
LrScheduler = Literal["constant", "cosine", "linear"]
ReportTo = Literal["none", "tensorboard", "wandb"]


HiddenNoiseScale = Literal["absolute", "layer-rms"]


class TrainHyperParameters(StageConfig):
    """Hyper-parameters shared by ``eagle3 train online`` and ``eagle3 train offline``."""

    num_epochs: int = Field(1, gt=0, description="Passes over the training data.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of the optimizer steps spent warming the learning rate up from 0.")
    lr_scheduler: LrScheduler = Field("cosine", description="Learning-rate schedule after warmup: constant, cosine or linear decay to 0.")
    per_device_batch_size: int = Field(1, gt=0, description="Samples per process per micro-batch (padded to the longest).")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    max_grad_norm: float = Field(0.5, gt=0, description="Gradient clipping norm.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    precision: TrainPrecision = Field("auto", description="bf16: autocast (and a bf16 target online); fp32: everything in float32; auto: bf16 on a GPU or a CPU with native bf16 matmuls (AVX512-BF16/AMX), else fp32 (emulated bf16 trains slower there).")
    ttt_length: int = Field(7, gt=0, description="Training-time-test unroll length: draft steps trained per position.")
    loss_decay: float = Field(0.8, gt=0, le=1, description="Weight decay^i of unroll step i's loss.")
    draft_vocab_size: int | None = Field(None, gt=0, description="Draft vocabulary size; default: the draft config's (32000 capped at the target vocabulary).")
    seed: int = Field(0, description="Seed of initialisation, data order and noise.")
    log_steps: int = Field(10, gt=0, description="Optimizer steps between log lines.")
    eval_steps: int | None = Field(None, gt=0, description="Optimizer steps between evaluations (also run at the end); default: only at the end.")
    save_steps: int | None = Field(500, gt=0, description="Optimizer steps between checkpoints, the points a stopped run resumes from (one is always saved at the end); 500 as in HF Trainer.")
    save_total_limit: int | None = Field(2, gt=0, description="Step checkpoints kept (oldest deleted first); best/ is kept apart. None keeps all.")
    report_to: ReportTo = Field("none", description="Metrics tracker: none, tensorboard (event files under OUTPUT/runs) or wandb.")
    run_name: str | None = Field(None, description="Run name for the tracker; default: the output folder's name.")
    hidden_noise_std: float = Field(0.0, ge=0, description="Std of Gaussian noise added to the target hidden states while training.")
    hidden_noise_scale: HiddenNoiseScale = Field("absolute", description="absolute: --hidden-noise-std as is; layer-rms: a fraction of each capture layer's RMS over the batch (capture layers can differ ~25x in scale).")
    fsdp: bool = Field(False, description="Shard the draft, its gradients and optimizer state across the processes (FSDP2) instead of DDP replicas.")
    resume: bool = Field(True, description="Continue from the latest checkpoint in output_dir when there is one.")
    init_draft: Path | None = Field(None, description="Draft checkpoint to fine-tune from (its vocabulary map is reused).")
    fc_norm: bool = Field(False, description="RMS-normalise each captured target state before fc (vLLM's fc_norm; written to config.json).")
    init_head_from_target: bool = Field(False, description="Start the draft's lm_head from the target's rows of the draft tokens and its norm from the target's final norm (needs equal hidden sizes).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (default: num_epochs over the data).")

    @model_validator(mode="after")
    def _one_head_start(self) -> TrainHyperParameters:
        if self.init_head_from_target and self.init_draft is not None:
            raise ValueError("init_head_from_target would overwrite the head loaded by init_draft; give one of them")
        return self


class OnlineTrainConfig(TrainHyperParameters, TargetRef, ChatSettings, RecordSettings):
    """``eagle3 train online``: the target runs in the loop and gives hidden states and targets."""

    train_data: str = Field(description="Training conversations: .jsonl/.json/.parquet file, folder, glob or hub dataset.")
    eval_data: str | None = Field(None, description="Evaluation conversations (same forms); eval sim_accept_len picks best/.")
    output_dir: Path = Field(description="Output folder: checkpoints/, best/, final/, vocab_map.safetensors, metrics.jsonl, config.json.")
    draft_config: Path | None = Field(None, description="Draft config file; default: derived from the target.")
    num_samples: int | None = Field(None, gt=0, description="Use only the first N valid training records.")


class OfflineTrainConfig(TrainHyperParameters):
    """``eagle3 train offline``: hidden states from ``dump-hidden`` shards, targets from the target's lm_head."""

    target_model: str = Field(description="Target model directory or hub id (only config, lm_head and embedding are read).")
    train_hidden: Path = Field(description="Hidden-state dump folder (eagle3 dump-hidden --output-dir) to train on.")
    eval_hidden: Path | None = Field(None, description="Hidden-state dump folder to evaluate on; eval sim_accept_len picks best/.")
    output_dir: Path = Field(description="Output folder: checkpoints/, best/, final/, vocab_map.safetensors, metrics.jsonl, config.json.")
    train_data: str | None = Field(None, description="The conversations the dump was made from; checked against its manifest when given.")
    draft_config: Path | None = Field(None, description="Draft config file; default: the dump's draft_config.json (its capture layers must match the dump).")
    chat_template: ChatTemplateName | None = Field(None, description="Checked against the dump's chat template when given.")
    max_length: int | None = Field(None, gt=0, description="Crop samples to this many tokens (default: as dumped).")
    num_samples: int | None = Field(None, gt=0, description="Train on only the first N samples of the training dump (the eval dump is used whole; the vocabulary map is still the whole dump's).")
    lm_head_key: str | None = Field(None, description="Safetensors key of the target's lm_head (default: lm_head.weight, or the embedding when tied).")
    embed_key: str = Field("model.embed_tokens.weight", description="Safetensors key of the target's input embedding.")
    verify_shards: bool | None = Field(None, description="Check every shard's sha256 before training (a corrupt shard is named, not trained on); default: on when hashing costs under 10% of an epoch.")
    stream: bool = Field(False, description="Train while dump-hidden is still writing --train-hidden: each epoch takes the shards finished when it starts, the last epoch waits for all of them; the schedule is sized from the dump's planned records.")

    @model_validator(mode="after")
    def _stream_takes_the_whole_dump(self) -> OfflineTrainConfig:
        if self.stream and self.num_samples is not None:
            raise ValueError("num_samples takes a prefix of a finished dump; it cannot be combined with stream")
        return self


BenchMode = Literal["eagle", "baseline", "both"]
BenchDtype = Literal["auto", "float32", "bfloat16", "float16"]
# "pytorch" is AngelSlim's name for the built-in decoder (--deploy-backend pytorch|vllm).
BenchBackend = Literal["hf", "pytorch", "vllm", "pytorch_tts"]


def _bench_output_dir(data: Any) -> Any:
    """AngelSlim's default output folder: ``output/<bench name>`` (here under the current folder)."""
    if isinstance(data, dict) and data.get("output_dir") is None:
        name = str(data.get("bench_name") or "mt_bench")
        data = {**data, "output_dir": Path("output") / re.sub(r"[^\w.-]+", "_", name.removeprefix("hub:"))}
    return data


class BenchConfig(StageConfig):
    """``eagle3 bench``: speculative decoding against plain decoding (AngelSlim spec_benchmark flags)."""

    base_model_path: str = Field(description="Target model directory or hub id.")
    eagle_model_path: str | None = Field(None, description="Draft checkpoint directory or hub id (needed for eagle/both).")
    model_id: str = Field(description="Name used in the answer file names and records.")
    bench_name: str = Field("mt_bench", description="mt_bench, alpaca, gsm8k or humaneval (EAGLE's question files, bundled), or hub:ORG/NAME[:split] for a hub dataset; with --bench-data only a label.")
    bench_data: Path | None = Field(None, description="A question.jsonl of your own (question_id, category, turns); replaces the bundled file of bench_name.")
    mode: BenchMode = Field("both", description="eagle, baseline, or both on the same questions.")
    # Filled in before validation when absent, so a resolved config always names its folder.
    output_dir: Path = Field(None, description="Where answers, summary.json and the plot are written; default output/<bench name> (AngelSlim's layout).")  # type: ignore[assignment]
    temperature: float = Field(1.0, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold (T > 0 only).")
    max_new_token: int = Field(1024, gt=0, description="Most tokens generated per turn.")
    total_token: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(60, description="Draft tree size: nodes verified per target forward (root included); auto: measure candidate trees on the warm-up question and keep the fastest (cached per machine and models).")
    depth: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(5, description="Draft tree depth, as in EAGLE/AngelSlim: expansions after the root's top-k, so depth + 1 draft tokens on the longest path (a perfect chain gives τ = depth + 2); or auto.")
    top_k: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(10, description="Children expanded per node; 1 drafts a chain; or auto.")
    num_gpus_per_model: int = Field(1, ge=1, description="GPUs one model is spread over.")
    num_gpus_total: int = Field(1, ge=1, description="GPUs used in all; total/per-model workers share the questions.")
    max_gpu_memory: str | None = Field(None, description="Memory cap per GPU when a model spans several (e.g. 70GiB).")
    seed: int = Field(42, description="Random seed (question i uses seed + i).")
    question_begin: int | None = Field(None, description="First question index (Python slice start).")
    question_end: int | None = Field(None, description="Question index to stop before (Python slice end).")
    no_metrics: bool = Field(False, description="Skip the PNG plot.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    dtype: BenchDtype = Field("auto", description="Model dtype; auto = bfloat16 on CUDA, float32 on CPU.")
    draft_head_dtype: BenchDtype = Field("auto", description="dtype of the draft's lm_head (read once per draft level); auto = bfloat16 on a CPU with native bf16 matmuls (AVX512-BF16/AMX: 3x faster there), else the model dtype. Verification stays exact.")
    target_forward: Literal["auto", "fused", "transformers"] = Field("auto", description="Who runs the target's layers in the built-in decoder: fused = eagle3 (q/k/v and gate/up stacked, no per-module glue; same logits; llama, mistral, qwen2, qwen3 and hunyuan_v1_dense), transformers = the model's own forward; auto = fused on a CPU where the model allows it, else transformers.")
    compile: bool = Field(False, description="Built-in decoder: run the target's one-token and tree forwards over a static cache, and each draft level over the whole draft cache, through torch.compile (one graph per forward kind and cache size; CUDA graphs on CUDA); prompts stay eager. Off by default: half the tokens/s on a 2-core CPU (benchmarks/RESULTS.md).")
    chat_template: ChatTemplateName = Field("auto", description="qwen3, hunyuan, or auto (the tokenizer's own).")
    system_prompt: str | None = Field(None, description="System prompt for every question; none otherwise.")
    enable_thinking: bool = Field(False, description="Qwen3 thinking mode.")
    backend: BenchBackend = Field("hf", description="hf (AngelSlim: pytorch): the built-in tree decoder; vllm: vLLM's own speculative decoding (a chain).")
    num_speculative_tokens: int = Field(3, ge=1, description="vllm backend: draft tokens proposed per step.")
    speculative_draft_tensor_parallel_size: int = Field(1, ge=1, description="vllm backend: tensor-parallel size of the draft (vLLM's draft_tensor_parallel_size).")
    vllm_python: str | None = Field(None, description="vllm backend: Python with vLLM installed; default $EAGLE3_VLLM_PYTHON, else this Python.")

    _default_output_dir = model_validator(mode="before")(_bench_output_dir)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value == "pytorch_tts":
            raise ValueError("pytorch_tts is AngelSlim's speech (TTS) benchmark; eagle3 benchmarks text models: use hf (pytorch) or vllm")
        return "hf" if value == "pytorch" else value

    @model_validator(mode="after")
    def _draft_needed(self) -> "BenchConfig":
        if self.mode != "baseline" and not self.eagle_model_path:
            raise ValueError(f"--eagle-model-path is required for --mode {self.mode}")
        if self.num_gpus_total % self.num_gpus_per_model:
            raise ValueError("--num-gpus-total must be a multiple of --num-gpus-per-model")
        if "auto" in (self.total_token, self.depth, self.top_k) and self.backend != "hf":
            raise ValueError("--total-token/--depth/--top-k auto choose the built-in decoder's tree; vLLM drafts a chain of --num-speculative-tokens")
        if self.target_forward != "auto" and self.backend != "hf":
            raise ValueError("--target-forward chooses how the built-in decoder runs the target; vLLM runs its own")
        if self.compile and self.backend != "hf":
            raise ValueError("--compile compiles the built-in decoder's target forwards; vLLM compiles its own")
        if self.compile and self.target_forward == "fused":
            raise ValueError("--compile runs the model's own forward over a static cache: leave out --target-forward fused")
        if self.speculative_draft_tensor_parallel_size > 1 and self.backend != "vllm":
            raise ValueError("--speculative-draft-tensor-parallel-size is for --backend vllm; the built-in decoder runs the draft on the target's device")
        return self
