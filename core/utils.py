"""Small helpers shared by the whole engine: seeds, atomic writes, paths and devices."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def derive_seed(*parts: Any) -> int:
    """Derive a 63-bit seed from any JSON-able parts by hashing, so seeds never collide by accident.

    >>> derive_seed(0, "shuffle", 3) == derive_seed(0, "shuffle", 3)
    True
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def round_step(top: float, points: int) -> float:
    """The smallest round step (1, 2, 2.5 or 5 × 10^k) that covers (0, top] in at most ``points`` steps: an ε grid
    or an axis a reader can read out (0.02, 0.04, …, not 0.01875, 0.0375, …)."""
    if not math.isfinite(top) or top <= 0:
        raise ValueError(f"the range must be a positive number, got {top!r}")
    raw = top / points
    scale = 10.0 ** math.floor(math.log10(raw))
    return next(m * scale for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * scale >= raw * (1 - 1e-9))


def make_generator(*parts: Any, device: str = "cpu") -> "torch.Generator":
    """A torch.Generator seeded by :func:`derive_seed`; nothing touches the global RNG."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen


def config_hash(config: dict[str, Any], length: int = 12) -> str:
    """Hash of a config's sorted JSON: the id of a run or evaluation with that config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting and restoring it; mkstemp would otherwise leave files at 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class StopOnSignal:
    """A should-stop callable set by SIGTERM/SIGINT: training stops at the next batch boundary, keeping the last
    finished epoch (the CLI and background jobs both use it)."""

    def __init__(self) -> None:
        import signal

        self.requested = False
        self.signum: int | None = None  # the signal that asked, for the exit status 128 + signum
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signum = signum

    def __call__(self) -> bool:
        return self.requested


def atlas_home() -> Path:
    """Folder of the run registry and run artifacts: ``$ATLAS_HOME`` or ``./var``."""
    return Path(os.environ.get("ATLAS_HOME", "var")).resolve()


def data_home() -> Path:
    """Folder of downloaded dataset files: ``$ATLAS_DATA`` or ``<ATLAS_HOME>/data``."""
    env = os.environ.get("ATLAS_DATA")
    return Path(env).resolve() if env else atlas_home() / "data"


def assets_models_dir() -> Path:
    return REPO_ROOT / "assets" / "models"


def resolve_device(name: str = "auto") -> "torch.device":
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    import torch

    from core.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)
