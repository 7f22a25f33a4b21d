"""Checkpoint I/O: ``<name>.safetensors`` (weights and buffers) + ``<name>.json`` (arch, kwargs, provenance).

Loading never unpickles and never executes anything from the files. It validates before it builds: the JSON is
checked, the safetensors header is parsed by hand (so that a pickle in disguise, a lying header length or a
truncated file get a message that says so), the SHA-256 of the weights is compared with the JSON, and every tensor
name, shape and dtype is compared with the architecture built on the ``meta`` device (shapes only, no memory).
Only then are the tensors decoded, checked for NaN/Inf, and assigned into the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import struct
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

import core
from core.errors import CheckpointError, ConfigError
from core.models.registry import check_arch_kwargs, instantiate, preferred_layout
from core.utils import atomic_write_bytes, atomic_write_json, resolve_device

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_paths", "save_checkpoint", "load_checkpoint", "read_checkpoint_meta"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "robustness-atlas/1"

# Keys of the JSON that save_checkpoint computes; the caller's meta supplies everything else.
_COMPUTED_KEYS = ("format", "created_at", "versions", "num_params", "sha256")
_MAX_META_BYTES = 16 * 2**20
# The safetensors library itself refuses headers above 100 MB; refusing earlier gives a clearer message.
_MAX_HEADER_BYTES = 100 * 2**20
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_FLOAT_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"})
_TORCH_DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32", torch.int64: "I64", torch.float64: "F64",
}  # fmt: skip


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``dir/name``, ``dir/name.safetensors`` or ``dir/name.json`` → (``dir/name.safetensors``, ``dir/name.json``)."""
    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    if not base.name:
        raise ConfigError(f"checkpoint path {str(path)!r} has no file name")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the network in .module, torch.compile in ._orig_mod.
    for attr in ("_orig_mod", "module"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and not hasattr(model, "arch_name"):
            return _unwrap(inner)
    return model


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, tensor in model.state_dict().items():
        # A private CPU copy: safetensors refuses tensors that share storage, and the caller keeps training.
        tensor = tensor.detach().to("cpu", copy=True).contiguous()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"refusing to save: tensor {name!r} contains NaN or Inf")
        tensors[name] = tensor
    return tensors


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file for the same tensors: the library writes its header's ``__metadata__`` keys in a
    varying order (a Rust HashMap), so saving equal weights twice gave two files and two sha256s, and stored
    evaluations keyed on the weights' sha256 looked stale. The header is rewritten with sorted metadata keys, padded
    to 8 bytes as the library does; tensor offsets count from the end of the header, so only its length changes."""
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    if isinstance(header.get("__metadata__"), dict):
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + length:]


def save_checkpoint(model: nn.Module, meta: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` atomically; return the ``.safetensors`` path.

    ``model`` must come from :func:`core.models.build_model` (or a DDP / compiled wrapper of one). ``meta`` (dataset,
    method, hparams, seed, metrics, …) must be JSON-able; it is stored as given, plus ``arch``, ``arch_kwargs``,
    ``format``, ``created_at`` (ISO UTC), ``versions``, ``num_params`` and ``sha256`` (of the weights file).
    """
    module = _unwrap(model)
    arch, kwargs = getattr(module, "arch_name", None), getattr(module, "arch_kwargs", None)
    if arch is None or kwargs is None:
        raise ConfigError(
            f"{type(module).__name__} has no arch_name/arch_kwargs; build it with core.models.build_model"
        )
    check_arch_kwargs(arch, kwargs)
    if not isinstance(meta, Mapping):
        raise ConfigError(f"checkpoint meta must be a dict, got {type(meta).__name__}")
    try:
        json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"checkpoint meta must be JSON-able: {err}") from err
    for key, value in (("arch", arch), ("arch_kwargs", kwargs)):
        if key in meta and json.dumps(meta[key], sort_keys=True) != json.dumps(value, sort_keys=True):
            raise ConfigError(f"meta[{key!r}] = {meta[key]!r} contradicts the model's {value!r}")
    blob = _canonical(safetensors.torch.save(_state_tensors(module), metadata={"format": CHECKPOINT_FORMAT,
                                                                               "arch": arch}))
    record = {
        **dict(meta),
        "arch": arch,
        "arch_kwargs": kwargs,
        "format": CHECKPOINT_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "atlas": core.__version__, "python": platform.python_version()},
        "num_params": sum(p.numel() for p in module.parameters()),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    weights_path, json_path = checkpoint_paths(path)
    # Weights first: a reader that races the JSON sees a sha256 mismatch and a clear error, never silent junk.
    atomic_write_bytes(weights_path, blob)
    atomic_write_json(json_path, record)
    logger.info("saved %s checkpoint to %s (%d bytes)", arch, weights_path, len(blob))
    return weights_path


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's JSON (format, arch, arch_kwargs, sha256) without touching the weights."""
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"checkpoint metadata {json_path} is missing")
    size = json_path.stat().st_size
    if size > _MAX_META_BYTES:
        raise CheckpointError(f"checkpoint metadata {json_path} is {size} bytes, more than {_MAX_META_BYTES}")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint metadata {json_path} is not valid JSON: {err}") from err
    _validate_meta(json_path, meta)
    return meta


# What each required key of a checkpoint's JSON holds, for a user writing one by hand.
_META_KEYS = {
    "format": f'"{CHECKPOINT_FORMAT}"',
    "arch": 'the registered architecture, e.g. "smallcnn"',
    "arch_kwargs": "its constructor arguments as a JSON object, {} for the defaults",
    "sha256": "the SHA-256 hex digest of the .safetensors file's bytes (sha256sum prints it)",
}


def _validate_meta(json_path: Path, meta: Any) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata {json_path} must hold a JSON object, not {type(meta).__name__}")
    missing = [key for key in ("format", "arch", "arch_kwargs", "sha256") if key not in meta]
    if missing:
        hints = "; ".join(f"{key}: {_META_KEYS[key]}" for key in missing)
        raise CheckpointError(f"checkpoint metadata {json_path} lacks {', '.join(missing)} ({hints})")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{json_path} has format {meta['format']!r}; this version reads {CHECKPOINT_FORMAT!r}")
    if not isinstance(meta["arch_kwargs"], dict):
        raise CheckpointError(f"{json_path}: arch_kwargs must be a JSON object, got {meta['arch_kwargs']!r}")
    sha = meta["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise CheckpointError(f"{json_path}: sha256 must be 64 lowercase hex digits, got {sha!r}")
    try:
        check_arch_kwargs(meta["arch"], meta["arch_kwargs"])
    except ConfigError as err:
        raise CheckpointError(f"{json_path}: {err}") from err


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    max_bytes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Validate, then build and fill the model of a checkpoint; returns ``(model in eval mode, meta)``.

    Raises CheckpointError, naming the file (and the tensor), for: a missing file, a weights file over
    ``max_bytes``, a pickle / torch.save file in disguise, a malformed or truncated safetensors file, weights whose
    SHA-256 differs from the JSON, a JSON with an unknown arch or bad kwargs, missing / unexpected / misshapen
    tensors, a wrong dtype, and NaN or Inf values.
    """
    weights_path, json_path = checkpoint_paths(path)
    device = resolve_device(map_location) if isinstance(map_location, str) else torch.device(map_location)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} are missing")
    meta = read_checkpoint_meta(json_path)
    blob = _read_weights(weights_path, max_bytes)
    header = _parse_header(weights_path, blob)
    file_meta = header.pop("__metadata__", None) or {}
    if file_meta.get("format") != CHECKPOINT_FORMAT or file_meta.get("arch") != meta["arch"]:
        raise CheckpointError(
            f"{weights_path} header says format={file_meta.get('format')!r}, arch={file_meta.get('arch')!r}; "
            f"expected format={CHECKPOINT_FORMAT!r}, arch={meta['arch']!r} as in {json_path.name}. Write the file "
            f"with safetensors.torch.save_file(tensors, path, metadata={{'format': {CHECKPOINT_FORMAT!r}, "
            f"'arch': {meta['arch']!r}}}), or export it with the Atlas (python -m core train, the hub's download)"
        )
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights_path}: weights do not match their metadata (sha256 differs from {json_path})")
    model = _build_on_meta(json_path, meta)
    expected = model.state_dict()
    _compare_with_model(weights_path, header, expected, _describe(meta))
    tensors = _decode_tensors(weights_path, blob, expected, device)
    model.load_state_dict(tensors, strict=True, assign=True)
    preferred_layout(model)  # the file's tensors are contiguous; assign=True replaced the built model's layout
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"{weights_path}: the model has tensors a checkpoint cannot fill: {', '.join(leftover)}")
    model.eval()
    logger.info("loaded %s checkpoint from %s", meta["arch"], weights_path)
    return model, meta


def _describe(meta: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in sorted(meta["arch_kwargs"].items()))
    return f"{meta['arch']}({kwargs})"


def _read_weights(weights_path: Path, max_bytes: int | None) -> bytes:
    size = weights_path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise CheckpointError(f"{weights_path} is {size} bytes, more than the allowed max_bytes={max_bytes}")
    return weights_path.read_bytes()


def _parse_header(weights_path: Path, blob: bytes) -> dict[str, Any]:
    """Check the safetensors framing by hand, so each way a file can be wrong gets its own message."""
    if len(blob) < 8:
        raise CheckpointError(f"{weights_path} is {len(blob)} bytes, too short to be safetensors (truncated?)")
    is_pickle = blob[0] == 0x80 and blob[1] in (2, 3, 4, 5)
    is_zip = blob[:4] == b"PK\x03\x04"
    # A genuine header starts with "{" right after the 8-byte length; its length alone could mimic a pickle byte.
    if (is_pickle or is_zip) and blob[8:9] != b"{":
        raise CheckpointError(
            f"{weights_path} is a pickle/zip (torch.save) file, not safetensors; refusing to load it"
        )
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise CheckpointError(
            f"{weights_path} is not a safetensors file, or it is truncated: its first 8 bytes say the header is "
            f"{header_len} bytes long, larger than the whole file ({len(blob)} bytes)"
        )
    if header_len > _MAX_HEADER_BYTES:
        raise CheckpointError(f"{weights_path}: header of {header_len} bytes is implausibly large")
    try:
        header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{weights_path} is not safetensors (its header is not JSON; a pickle/zip (torch.save) file?); "
            "refusing to load it"
        ) from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{weights_path}: safetensors header is not a JSON object")
    _check_offsets(weights_path, header, len(blob) - 8 - header_len)
    return header


def _entry_end(entry: Any) -> int | None:
    """End offset of a well-formed tensor entry (dtype known, sizes consistent), else None."""
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPE_BYTES:
        return None
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        return None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        return None
    numel = 1
    for dim in shape:
        numel *= dim
    begin, end = offsets
    return end if 0 <= begin <= end and end - begin == numel * _DTYPE_BYTES[entry["dtype"]] else None


def _check_offsets(weights_path: Path, header: dict[str, Any], data_len: int) -> None:
    end_max = 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{weights_path}: __metadata__ must map strings to strings")
            continue
        end = _entry_end(entry)
        if end is None:
            raise CheckpointError(f"{weights_path}: malformed header entry for tensor {name!r}: {entry!r}")
        end_max = max(end_max, end)
    if end_max > data_len:
        raise CheckpointError(
            f"{weights_path} is truncated: its tensors need {end_max} data bytes but only {data_len} follow the header"
        )
    if end_max != data_len:
        raise CheckpointError(
            f"{weights_path}: size mismatch, {data_len - end_max} trailing bytes after the last tensor"
        )


def _build_on_meta(json_path: Path, meta: dict[str, Any]) -> nn.Module:
    # The meta device gives every tensor's name, shape and dtype without allocating or initialising anything;
    # fork_rng keeps the global RNG untouched even if a constructor draws random numbers on CPU.
    try:
        with torch.random.fork_rng(devices=[]):
            return instantiate(meta["arch"], meta["arch_kwargs"], device="meta")
    except ConfigError as err:
        raise CheckpointError(f"{json_path}: {err}") from err


def _limited(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _compare_with_model(
    weights_path: Path, header: dict[str, Any], expected: Mapping[str, torch.Tensor], described: str
) -> None:
    missing = [name for name in expected if name not in header]
    if missing:
        raise CheckpointError(f"{weights_path}: missing tensor {_limited(missing)} required by {described}")
    unexpected = [name for name in header if name not in expected]
    if unexpected:
        raise CheckpointError(f"{weights_path}: unexpected tensor {_limited(unexpected)} not in {described}")
    for name, target in expected.items():
        entry = header[name]
        if tuple(entry["shape"]) != tuple(target.shape):
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has shape {tuple(entry['shape'])} in the file but {described} "
                f"expects {tuple(target.shape)}"
            )
        wanted = _TORCH_DTYPES.get(target.dtype, str(target.dtype))
        if target.is_floating_point() and entry["dtype"] not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has dtype {entry['dtype']}, expected a floating dtype ({wanted})"
            )
        if not target.is_floating_point() and entry["dtype"] != wanted:
            raise CheckpointError(f"{weights_path}: tensor {name!r} has dtype {entry['dtype']}, expected {wanted}")


def _decode_tensors(
    weights_path: Path, blob: bytes, expected: Mapping[str, torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    try:
        raw = safetensors.torch.load(blob)
    except Exception as err:  # safetensors raises its own SafetensorError; anything here means a bad file
        raise CheckpointError(f"{weights_path}: safetensors could not decode the file: {err}") from err
    tensors = {}
    for name, tensor in raw.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_path}: tensor {name!r} contains NaN or Inf")
        tensors[name] = tensor.to(device=device, dtype=expected[name].dtype)
    return tensors
