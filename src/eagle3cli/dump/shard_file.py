"""One hidden-state shard: a safetensors file of flat per-token tensors plus a small index.

Tensors (``N`` samples, ``T`` tokens in all, ``H`` the target hidden size, ``U`` distinct
loss-masked token ids), ordered by item size so every tensor starts aligned:

- ``sample_offsets int64 [N + 1]`` — sample ``i`` is rows ``offsets[i]:offsets[i + 1]``
- ``sample_indices int64 [N]`` — each sample's position in the data (the global sample index)
- ``loss_token_ids int64 [U]``, ``loss_token_counts int64 [U]`` — frequencies of loss-masked
  target ids, so the vocab map can be rebuilt exactly from the shards
- ``input_ids int32 [T]``
- float8 dumps only, here so every tensor stays aligned: ``aux_scale float32 [T, 3]`` (one per
  token and capture layer: the layers' scales differ ~25x in small targets) and
  ``last_scale float32 [T, 1]``; a state is ``float8 value * scale`` (:func:`dequantize`,
  :meth:`HiddenSample.states`), the scale ``max |x| / 448`` over its token's capture-layer block
- ``aux_hidden [T, 3H]``, ``last_hidden [T, H]`` (dump dtype), ``loss_mask uint8 [T]``

Metadata: ``format``, ``format_version`` and ``sample_ids`` (JSON list of record ids).

The writer streams each sample's tensors straight into the file while hashing them (sha256),
so a shard is never concatenated or serialised in memory first: peak memory is the samples
themselves. Files are read back with the ``safetensors`` library; never with pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from eagle3cli.errors import Eagle3Error

FORMAT_NAME = "eagle3-hidden-states"
FORMAT_VERSION = 2  # 2: shard records hash the records' content (records_sha256)
SAFETENSORS_DTYPES = {
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.float8_e4m3fn: "F8_E4M3",
}
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
DUMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "float8_e4m3fn": FP8}
NUM_AUX_STATES = 3
HASH_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class HiddenSample:
    """One sample's tensors, as dumped and as read back."""

    sample_index: int  # position in the data (reader order, bad records not counted)
    sample_id: str
    input_ids: torch.Tensor  # [T] int32
    loss_mask: torch.Tensor  # [T] uint8
    aux_hidden: torch.Tensor  # [T, 3 * H]
    last_hidden: torch.Tensor  # [T, H]
    aux_scale: torch.Tensor | None = None  # [T, 3] float32, float8 dumps only
    last_scale: torch.Tensor | None = None  # [T, 1] float32, float8 dumps only

    @classmethod
    def of(cls, sample: Any, aux_hidden: torch.Tensor, last_hidden: torch.Tensor,
           aux_scale: torch.Tensor | None = None, last_scale: torch.Tensor | None = None) -> HiddenSample:
        """A tokenised sample's ids and loss mask (stored int32 / uint8) with its states."""
        return cls(sample.sample_index, sample.sample_id, torch.tensor(sample.input_ids, dtype=torch.int32),
                   torch.tensor(sample.loss_mask, dtype=torch.uint8), aux_hidden, last_hidden, aux_scale, last_scale)

    @classmethod
    def rows(
        cls, tensor: Callable[[str], Any], sample_index: int, sample_id: str, start: int, end: int, *, scaled: bool
    ) -> HiddenSample:
        """Token rows ``[start, end)`` of a shard whose tensor ``name`` is ``tensor(name)`` (a tensor or a lazy slice)."""
        names = ("input_ids", "loss_mask", "aux_hidden", "last_hidden", *(("aux_scale", "last_scale") if scaled else ()))
        return cls(sample_index, sample_id, **{name: tensor(name)[start:end] for name in names})

    @property
    def num_tokens(self) -> int:
        return self.input_ids.numel()

    def states(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(aux_hidden, last_hidden)`` in ``dtype``, decoded when the dump stores float8."""
        if self.aux_scale is None or self.last_scale is None:
            return self.aux_hidden.to(dtype), self.last_hidden.to(dtype)
        return dequantize(self.aux_hidden, self.aux_scale, dtype), dequantize(self.last_hidden, self.last_scale, dtype)


def quantize(states: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[..., groups * H]`` → float8 ``[..., groups * H]`` and float32 scales ``[..., groups]``:
    each group of each row scaled so its largest magnitude is float8's largest finite value."""
    grouped = states.to(torch.float32, copy=True).unflatten(-1, (groups, -1))  # the one float32 copy (never the input)
    amax = grouped.abs().amax(-1)
    scale = torch.where(amax > 0, amax / FP8_MAX, 1.0)  # an all-zero block keeps a normal scale
    values = grouped.div_(scale[..., None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
    return values.flatten(-2), scale


def dequantize(values: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize`, in ``dtype``."""
    grouped = values.float().unflatten(-1, (scale.shape[-1], -1))
    return (grouped * scale[..., None]).flatten(-2).to(dtype)


@dataclass(frozen=True)
class TensorParts:
    """A tensor written as the concatenation (along dim 0) of ``parts``."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    parts: Sequence[torch.Tensor]

    @property
    def num_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class ShardDigest:
    num_bytes: int
    sha256: str


def loss_token_counts(samples: Sequence[HiddenSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [U], counts [U])`` int64 of the loss-masked input ids of ``samples``."""
    masked = [sample.input_ids[sample.loss_mask.bool()] for sample in samples]
    ids = torch.cat(masked).to(torch.int64) if masked else torch.zeros(0, dtype=torch.int64)
    unique_ids, counts = torch.unique(ids, return_counts=True)
    return unique_ids, counts.to(torch.int64)


def shard_tensors(samples: Sequence[HiddenSample], *, hidden_size: int, dtype: torch.dtype) -> dict[str, TensorParts]:
    """The shard's tensors (see the module docstring) as parts to stream, in file order."""
    lengths = [sample.num_tokens for sample in samples]
    num_tokens = sum(lengths)
    offsets = torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0)
    token_ids, token_counts = loss_token_counts(samples)

    def whole(tensor: torch.Tensor) -> TensorParts:
        return TensorParts(tensor.dtype, tuple(tensor.shape), [tensor])

    def per_sample(field: str, tensor_dtype: torch.dtype, width: int | None) -> TensorParts:
        shape = (num_tokens,) if width is None else (num_tokens, width)
        return TensorParts(tensor_dtype, shape, [getattr(sample, field) for sample in samples])

    scales = {
        "aux_scale": per_sample("aux_scale", torch.float32, NUM_AUX_STATES),
        "last_scale": per_sample("last_scale", torch.float32, 1),
    } if dtype == FP8 else {}
    return {
        "sample_offsets": whole(offsets),
        "sample_indices": whole(torch.tensor([s.sample_index for s in samples], dtype=torch.int64)),
        "loss_token_ids": whole(token_ids),
        "loss_token_counts": whole(token_counts),
        "input_ids": per_sample("input_ids", torch.int32, None),
        **scales,  # float32 before the (possibly 1-byte) states keeps every tensor aligned
        "aux_hidden": per_sample("aux_hidden", dtype, 3 * hidden_size),
        "last_hidden": per_sample("last_hidden", dtype, hidden_size),
        "loss_mask": per_sample("loss_mask", torch.uint8, None),
    }


def safetensors_header(tensors: dict[str, TensorParts], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and JSON header of a safetensors file, padded to 8-byte alignment."""
    entries: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, tensor in tensors.items():
        entries[name] = {
            "dtype": SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.num_bytes],
        }
        offset += tensor.num_bytes
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def write_shard(
    handle: IO[bytes], samples: Sequence[HiddenSample], *, hidden_size: int, dtype: torch.dtype
) -> ShardDigest:
    """Stream ``samples`` as one safetensors shard into ``handle``; return its size and sha256."""
    tensors = shard_tensors(samples, hidden_size=hidden_size, dtype=dtype)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "sample_ids": json.dumps([sample.sample_id for sample in samples], ensure_ascii=False),
    }
    hasher = hashlib.sha256()
    num_bytes = 0

    def emit(data: bytes | memoryview) -> None:
        nonlocal num_bytes
        hasher.update(data)
        handle.write(data)
        num_bytes += len(data)

    emit(safetensors_header(tensors, metadata))
    for name, tensor in tensors.items():
        for part in tensor.parts:
            _emit_tensor(emit, name, part, tensor)
    return ShardDigest(num_bytes=num_bytes, sha256=hasher.hexdigest())


def _emit_tensor(emit: Callable[[memoryview], None], name: str, part: torch.Tensor, tensor: TensorParts) -> None:
    if part.dtype != tensor.dtype or part.shape[1:] != tensor.shape[1:]:
        raise ValueError(
            f"{name}: part {part.dtype} {list(part.shape)} does not fit {tensor.dtype} {list(tensor.shape)}"
        )
    raw = part.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # little-endian bytes
    emit(memoryview(raw.numpy()))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    hasher = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def shard_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file held in ``data``."""
    try:
        (header_size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_size])
        return dict(header.get("__metadata__") or {})
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as error:
        raise Eagle3Error(f"shard {path} has no readable safetensors header: {error}") from error


def read_shard_file(path: Path, *, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a shard, checked against ``sha256`` when given."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise Eagle3Error(f"cannot read shard {path}: {error}") from error
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise Eagle3Error(
            f"shard {path} fails its sha256 checksum (corrupted or changed since it was written)",
            hint="rerun the same dump-hidden command: it recomputes shards whose checksum does not verify",
        )
    try:
        tensors = load(data)
    except SafetensorError as error:
        raise Eagle3Error(f"shard {path} is not a readable safetensors file: {error}") from error
    return tensors, shard_metadata(data, path)


def shard_problems(tensors: dict[str, torch.Tensor], metadata: dict[str, str], *, hidden_size: int) -> list[str]:
    """How a shard's tensors break the layout of this module (empty when they fit)."""
    if metadata.get("format") != FORMAT_NAME or metadata.get("format_version") != str(FORMAT_VERSION):
        found = f"{metadata.get('format')} v{metadata.get('format_version')}"
        return [f"format {found}, expected {FORMAT_NAME} v{FORMAT_VERSION}"]
    expected_shapes = EXPECTED_SHAPES | (SCALE_SHAPES if tensors.get("aux_hidden", torch.empty(0)).dtype == FP8 else {})
    missing = [name for name in expected_shapes if name not in tensors]
    if missing:
        return [f"missing tensors {', '.join(missing)}"]
    num_tokens, num_samples = tensors["input_ids"].shape[0], tensors["sample_indices"].shape[0]
    sizes = {
        "N": num_samples, "N+1": num_samples + 1, "T": num_tokens, "H": hidden_size, "3H": 3 * hidden_size,
        "U": tensors["loss_token_ids"].shape[0], "3": NUM_AUX_STATES, "1": 1,
    }
    problems = []
    for name, dims in expected_shapes.items():
        expected = [sizes[dim] for dim in dims]
        if list(tensors[name].shape) != expected:
            problems.append(f"{name} has shape {list(tensors[name].shape)}, expected {expected}")
    if any(tensors[name].dtype != torch.float32 for name in SCALE_SHAPES if name in expected_shapes):
        problems.append("its float8 scales are not float32")
    if tensors["last_hidden"].dtype != tensors["aux_hidden"].dtype:
        problems.append(f"last_hidden is {tensors['last_hidden'].dtype}, aux_hidden {tensors['aux_hidden'].dtype}")
    offsets = tensors["sample_offsets"]
    if not problems and (int(offsets[0]) != 0 or int(offsets[-1]) != num_tokens or bool((offsets.diff() < 0).any())):
        problems.append("sample_offsets do not split the tokens into samples")
    if len(json.loads(metadata.get("sample_ids", "[]"))) != num_samples:
        problems.append("sample_ids metadata does not list one id per sample")
    return problems


EXPECTED_SHAPES = {
    "sample_offsets": ("N+1",),
    "sample_indices": ("N",),
    "loss_token_ids": ("U",),
    "loss_token_counts": ("U",),
    "input_ids": ("T",),
    "aux_hidden": ("T", "3H"),
    "last_hidden": ("T", "H"),
    "loss_mask": ("T",),
}
SCALE_SHAPES = {"aux_scale": ("T", "3"), "last_scale": ("T", "1")}


def split_samples(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> list[HiddenSample]:
    """The samples of a checked shard (views into its tensors)."""
    offsets = tensors["sample_offsets"].tolist()
    sample_ids = json.loads(metadata["sample_ids"])
    scaled = "aux_scale" in tensors
    return [HiddenSample.rows(tensors.__getitem__, int(tensors["sample_indices"][i]), sample_ids[i], start, end, scaled=scaled)
            for i, (start, end) in enumerate(zip(offsets, offsets[1:]))]
