"""The layout of a dump folder, its ``manifest.json`` and the per-shard records.

::

    OUTPUT/
      manifest.json            what was dumped (target, layers, dtype, template, ...) and every shard
      config.json              the resolved DumpHiddenConfig (rerun with --config config.json)
      draft_config.json        the draft config whose capture layers were used (checkpoint format)
      vocab_map.safetensors    d2t / t2d built from all shards' loss-masked token counts
      shards/shard-000000.safetensors   samples [0, S), S = shard_size (see shard_file.py)
      shards/shard-000000.json          its record: counts, size, sha256

Shard ``k`` holds the samples at positions ``[k * S, (k + 1) * S)`` of the data, whatever
the number of processes. A shard is written to a temporary name and renamed; its record is
written (also atomically) after it, so a shard without a record, or whose bytes do not hash
to the record's sha256, is not complete. The manifest is written with ``complete: false``
when a run starts (so a rerun can check its settings), again with ``planned`` (the number
of shards and input records the whole dump covers) once the data is read, and with every
shard record when it ends. Readers accept only a complete one, except ``train offline
--stream``, which trains on the shards whose record is written while the run goes on
(:func:`eagle3cli.dump.reader.open_growing_dump`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from eagle3cli.dump.shard_file import FORMAT_NAME, FORMAT_VERSION, sha256_file
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json

MANIFEST_FILE = "manifest.json"
DRAFT_CONFIG_FILE = "draft_config.json"
SHARDS_DIR = "shards"
VLLM_STATES_DIR = ".vllm-states"  # --backend vllm: per-request states files (while a shard is computed) and engine logs
SHARD_SUFFIX = ".safetensors"
RECORD_SUFFIX = ".json"
# Settings that change what a shard holds: a rerun must match them to resume.
IDENTITY_KEYS = (
    "format_version", "target.path", "target.config_sha256", "aux_layer_ids", "dtype", "max_length",
    "chat_template", "enable_thinking", "system_prompt", "data.source", "data.format", "data.num_samples",
    "data.on_bad_record", "shard_size",
)
TENSOR_LAYOUT = {
    "input_ids": "int32 [T]",
    "loss_mask": "uint8 [T]",
    "aux_hidden": "dtype [T, 3 * hidden_size] (capture layers low -> high)",
    "last_hidden": "dtype [T, hidden_size] (after the target's final norm)",
    "sample_offsets": "int64 [N + 1]",
    "sample_indices": "int64 [N]",
    "loss_token_ids": "int64 [U]",
    "loss_token_counts": "int64 [U]",
    "aux_scale": "float32 [T, 3], float8 dumps only (state = value * scale)",
    "last_scale": "float32 [T, 1], float8 dumps only",
}


@dataclass(frozen=True)
class ShardRecord:
    """What a finished shard holds, and the checksum that proves it is whole."""

    index: int
    file: str  # relative to the dump folder
    first_sample: int
    num_samples: int
    num_skipped_without_loss: int  # samples of the range left out: no loss-masked token
    num_tokens: int
    num_loss_tokens: int
    num_bytes: int
    sha256: str
    records_sha256: str  # of the range's records (ids and turns): detects a data file edited in place

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ShardRecord:
        """Parse a record; ``ValueError`` when a field is missing or of the wrong type."""
        names = {field.name for field in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"a shard record has the keys {sorted(names)}")
        record = cls(**data)
        if not isinstance(record.file, str) or not isinstance(record.sha256, str):
            raise ValueError("file and sha256 must be strings")
        return record


def shard_stem(index: int) -> str:
    return f"shard-{index:06d}"


def shard_file(directory: Path, index: int) -> Path:
    return Path(directory) / SHARDS_DIR / f"{shard_stem(index)}{SHARD_SUFFIX}"


def record_file(directory: Path, index: int) -> Path:
    return Path(directory) / SHARDS_DIR / f"{shard_stem(index)}{RECORD_SUFFIX}"


def records_sha256(records: list[Any]) -> str:
    """A digest of a shard's records: each one's id and turns (role, content), as JSON lines."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    return digest.hexdigest()


def read_record(directory: Path, index: int) -> ShardRecord | None:
    """Shard ``index``'s record, or ``None`` when it is missing or unreadable."""
    path = record_file(directory, index)
    try:
        return ShardRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def write_record(directory: Path, record: ShardRecord) -> None:
    atomic_write_json(record_file(directory, record.index), record.to_json())


def record_verifies(directory: Path, record: ShardRecord, *, first_sample: int, records_sha256: str) -> bool:
    """True when the shard file is whole (size and sha256) and holds exactly the expected records."""
    path = Path(directory) / record.file
    return (
        record.first_sample == first_sample
        and record.records_sha256 == records_sha256
        and path.is_file()
        and path.stat().st_size == record.num_bytes
        and sha256_file(path) == record.sha256
    )


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of ``directory``, ``None`` when there is none; an error when it is unreadable."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise Eagle3Error(
            f"{path} is not readable JSON: {error}", hint="pass --overwrite to start the dump over"
        ) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise Eagle3Error(f"{path} is not a {FORMAT_NAME} manifest", hint="use another --output-dir")
    return data


def write_manifest(
    directory: Path, header: dict[str, Any], records: list[ShardRecord] | None, *, bad_records: dict[str, Any] | None = None
) -> None:
    """The manifest: ``complete: false`` without records (run started), totals and shards with
    them, and the malformed input records skipped by ``--on-bad-record skip`` (count and reasons)."""
    if records is None:
        atomic_write_json(Path(directory) / MANIFEST_FILE, {**header, "complete": False, "shards": []})
        return
    totals = {
        f"num_{name}": sum(getattr(record, f"num_{name}") for record in records)
        for name in ("samples", "skipped_without_loss", "tokens", "loss_tokens", "bytes")
    }
    manifest = {**header, "complete": True, "num_shards": len(records), **totals}
    manifest["bad_records_skipped"] = bad_records or {"count": 0, "by_reason": {}}
    manifest["shards"] = [record.to_json() for record in records]
    atomic_write_json(Path(directory) / MANIFEST_FILE, manifest)


def lookup(data: dict[str, Any], dotted_key: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (``None`` where a level is missing)."""
    value: Any = data
    for part in dotted_key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def identity_differences(existing: dict[str, Any], header: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs between a manifest and this run."""
    return [
        f"{key}: {json.dumps(lookup(existing, key))} -> {json.dumps(lookup(header, key))}"
        for key in IDENTITY_KEYS
        if lookup(existing, key) != lookup(header, key)
    ]


def check_resumable(directory: Path, header: dict[str, Any]) -> None:
    """Raise unless ``directory`` is empty of dumps or holds one made with the same settings."""
    existing = read_manifest(directory)
    if existing is None:
        stray = sorted((Path(directory) / SHARDS_DIR).glob(f"shard-*{SHARD_SUFFIX}"))
        if stray:
            raise Eagle3Error(
                f"{directory} holds {len(stray)} shard file(s) but no {MANIFEST_FILE}",
                hint="pass --overwrite to delete them and start over, or use another --output-dir",
            )
        return
    differences = identity_differences(existing, header)
    if differences:
        raise Eagle3Error(
            f"{directory} holds a dump made with other settings ({'; '.join(differences)})",
            hint="rerun with the original settings to resume, pass --overwrite to start over, "
            "or use another --output-dir",
        )


def remove_dump(directory: Path) -> None:
    """Delete what a dump wrote in ``directory`` (manifest, vocab map, shards, records, temporaries)."""
    from eagle3cli.draft.vocab import VOCAB_MAP_FILE

    directory = Path(directory)
    for name in (MANIFEST_FILE, VOCAB_MAP_FILE, DRAFT_CONFIG_FILE):
        (directory / name).unlink(missing_ok=True)
    for pattern in (f"shard-*{SHARD_SUFFIX}", f"shard-*{RECORD_SUFFIX}"):
        for path in (directory / SHARDS_DIR).glob(pattern):
            path.unlink()
    shutil.rmtree(directory / VLLM_STATES_DIR, ignore_errors=True)
    remove_temporaries(directory)


def remove_temporaries(directory: Path) -> None:
    """Delete temporary files a killed run left (``atomic_write`` names them ``.NAME.XXXX.tmp``)."""
    from eagle3cli.draft.vocab import VOCAB_MAP_FILE

    directory = Path(directory)
    patterns = [f"{SHARDS_DIR}/.shard-*.tmp"] + [f".{name}.*.tmp" for name in (MANIFEST_FILE, VOCAB_MAP_FILE)]
    for pattern in patterns:
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)
