"""Datasets read from their standard files: MNIST, Fashion-MNIST (IDX), CIFAR-10 (binary) and SVHN (.mat).

Files live in ``data_home()/<name>/``. Every parser checks the format (magic numbers, dimensions, record sizes,
variable names) and turns any problem into a :class:`DataError` that names the file, its folder and the command
that fetches it. Nothing is ever unpickled: CIFAR-10 is read from its binary version, SVHN with
``scipy.io.loadmat`` (MATLAB v5 arrays, no pickle). :func:`download_dataset` fetches the files from their
canonical URLs (:data:`SOURCES`, overridable for mirrors and tests) and checks their MD5 sums;
:func:`verify_dataset` reports what is on disk without raising.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np
from core.lazy import torch

from core.data.registry import LoadedData, check_range, dataset_info, register_dataset
from core.errors import DataError
from core.utils import atomic_write_bytes, data_home

log = logging.getLogger(__name__)

Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes done, total bytes or None)

IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CIFAR_DIR = "cifar-10-batches-bin"
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
CIFAR_MEMBERS = tuple(f"{CIFAR_DIR}/{f}" for f in CIFAR_BATCHES["train"] + CIFAR_BATCHES["test"])
CIFAR_RECORD = 1 + 3 * 32 * 32
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
DOWNLOAD_COMMAND = "python -m core data download {name}"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its name in the dataset folder, its URL and its known MD5."""

    name: str
    url: str
    md5: str


def _remote(base: str, md5s: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, base + name, md5) for name, md5 in md5s.items())


# Module-level so a mirror (or a test with file:// URLs) can replace an entry.
SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _remote("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion-mnist": _remote("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": _remote("https://www.cs.toronto.edu/~kriz/", {CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"}),
    "svhn": _remote("http://ufldl.stanford.edu/housenumbers/", {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b43a5f7ea2"}),
}


def _hint(name: str) -> str:
    return f"run `{DOWNLOAD_COMMAND.format(name=name)}` or place the original files there"


def _file_error(name: str, path: Path, problem: str) -> DataError:
    return DataError(f"{name}: file {path.name} in {path.parent} {problem}; {_hint(name)}")


def _require_file(name: str, path: Path) -> Path:
    if not path.is_file():
        raise _file_error(name, path, "is missing")
    return path


# ---------------------------------------------------------------------------------------------------- parsers

def read_idx(path: Path, *, name: str, ndim: int) -> np.ndarray:
    """An IDX file (gzip or raw) of unsigned bytes with ``ndim`` dimensions, as a read-only uint8 array."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise _file_error(name, path, f"is not a valid gzip file ({err})") from err
    magic = 0x0800 + ndim
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        got = f"0x{struct.unpack('>I', raw[:4])[0]:08x}" if len(raw) >= 4 else "none"
        raise _file_error(name, path, f"has bad magic number {got}, expected 0x{magic:08x} (unsigned bytes, "
                                      f"{ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _file_error(name, path, "is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise _file_error(name, path, f"has {len(raw) - header} data bytes but its dimensions {dims} need "
                                      f"{int(np.prod(dims))} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_path(folder: Path, file_name: str) -> Path:
    """The .gz file, or the already-decompressed file next to it if that is all there is."""
    path = folder / file_name
    plain = path.with_suffix("")
    return plain if not path.exists() and plain.is_file() else path


def _read_idx_split(name: str, split: str, folder: Path, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path = (_require_file(name, _idx_path(folder, f)) for f in IDX_FILES[split])
    images = read_idx(image_path, name=name, ndim=3)
    labels = read_idx(label_path, name=name, ndim=1)
    if images.shape[1:] != (28, 28):
        raise _file_error(name, image_path, f"holds images of size {images.shape[1:]}, expected (28, 28)")
    if len(labels) != len(images):
        raise _file_error(name, label_path, f"has {len(labels)} labels for {len(images)} images")
    _check_labels(name, label_path, labels, 10)
    return images[:n, None], labels[:n]


def _check_labels(name: str, path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise _file_error(name, path, f"has label {int(labels.max())}, expected 0..{num_classes - 1}")


def read_cifar_batch(path: Path, *, name: str = "cifar10") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes (CHW) → uint8 N×3×32×32, labels."""
    raw = path.read_bytes()
    if not raw or len(raw) % CIFAR_RECORD:
        raise _file_error(name, path, f"has {len(raw)} bytes, not a whole number of {CIFAR_RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    _check_labels(name, path, labels, 10)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_cifar_split(name: str, split: str, folder: Path, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    batch_dir = folder / CIFAR_DIR if (folder / CIFAR_DIR).is_dir() else folder
    paths = [batch_dir / f for f in CIFAR_BATCHES[split]]
    if not all(p.is_file() for p in paths) and ((folder / "cifar-10-batches-py").exists()
                                                or (folder / "cifar-10-python.tar.gz").exists()):
        log.warning("%s holds the pickled Python version of CIFAR-10, which is never loaded; "
                    "use the binary version", folder)
    images, labels, count = [], [], 0
    for path in paths:
        if n is not None and count >= n:
            break  # a small subset needs only the first batches
        x, y = read_cifar_batch(_require_file(name, path), name=name)
        images.append(x)
        labels.append(y)
        count += len(y)
    return np.concatenate(images)[:n], np.concatenate(labels)[:n]


def read_svhn_mat(path: Path, *, name: str = "svhn") -> tuple[np.ndarray, np.ndarray]:
    """An SVHN ``*_32x32.mat`` (X: 32×32×3×N uint8, y: N×1 with 10 for digit 0) → uint8 N×3×32×32, labels."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=("X", "y"))
    except Exception as err:  # scipy raises many kinds (ValueError, MatReadError, ...) for a bad file
        raise _file_error(name, path, f"is not a readable MATLAB v5 file ({type(err).__name__}: {err})") from err
    for key in ("X", "y"):
        if key not in mat:
            raise _file_error(name, path, f"lacks the variable {key!r}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise _file_error(name, path, f"has X of shape {x.shape} ({x.dtype}) for {len(y)} labels, "
                                      "expected uint8 32×32×3×N")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise _file_error(name, path, f"has labels outside 0..10 ({y.min()}..{y.max()})")
    return x.transpose(3, 2, 0, 1), np.where(y == 10, 0, y)


def _read_svhn_split(name: str, split: str, folder: Path, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_svhn_mat(_require_file(name, folder / SVHN_FILES[split]), name=name)
    return x[:n], y[:n]


# -------------------------------------------------------------------------------------------------- registry

Reader = Callable[[str, str, Path, "int | None"], "tuple[np.ndarray, np.ndarray]"]
_READERS: dict[str, Reader] = {}


def read_split(name: str, split: str, folder: Path | None = None, n: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 images (N×C×H×W) and int64 labels of one split, read from ``folder`` (default: data_home)."""
    folder = Path(folder) if folder is not None else data_home() / name
    if not folder.is_dir():
        files = ", ".join(dataset_info(name).files)
        raise DataError(f"{name}: folder {folder} does not exist; run `{DOWNLOAD_COMMAND.format(name=name)}` "
                        f"or create it and place {files} there")
    x, y = _READERS[name](name, split, folder, n)
    return x, y.astype(np.int64)


def _register_file_dataset(name: str, reader: Reader, *, description: str, input_shape: tuple[int, ...],
                           classes: tuple[str, ...], files: tuple[str, ...]) -> None:
    _READERS[name] = reader

    def load(split: str, n: int | None) -> LoadedData:
        check_range(name, "n", n, low=1)
        x, y = read_split(name, split, n=n)
        return LoadedData(torch.from_numpy(x.astype(np.float32) / np.float32(255)), torch.from_numpy(y))

    load.__name__ = f"_load_{name.replace('-', '_')}"
    register_dataset(name, kind="image", description=description, input_shape=input_shape, classes=classes,
                     defaults={"n": None}, files=files)(load)


DIGIT_CLASSES = tuple(str(i) for i in range(10))
_IDX_ALL = IDX_FILES["train"] + IDX_FILES["test"]
_register_file_dataset("mnist", _read_idx_split, input_shape=(1, 28, 28), classes=DIGIT_CLASSES, files=_IDX_ALL,
                       description="MNIST handwritten digits, 60k/10k 28×28 (IDX files)")
_register_file_dataset(
    "fashion-mnist", _read_idx_split, input_shape=(1, 28, 28), files=_IDX_ALL,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    description="Fashion-MNIST clothing images, 60k/10k 28×28 (IDX files)")
_register_file_dataset(
    "cifar10", _read_cifar_split, input_shape=(3, 32, 32), files=CIFAR_MEMBERS,
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    description="CIFAR-10 colour images, 50k/10k 32×32 (binary version; never unpickled)")
_register_file_dataset("svhn", _read_svhn_split, input_shape=(3, 32, 32), classes=DIGIT_CLASSES,
                       files=tuple(SVHN_FILES.values()),
                       description="SVHN street-view house numbers, 73k/26k 32×32 (.mat files)")


# ------------------------------------------------------------------------------------------ download / verify

def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, name: str, progress: Progress | None) -> bytes:
    """The bytes at ``url``; a network failure becomes a DataError with the manual alternative."""
    chunks: list[bytes] = []
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                chunks.append(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(dest.name, done, total)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataError(f"{name}: could not download {url} ({err}); download it by hand and place "
                        f"{dest.name} in {dest.parent}") from err
    if total is not None and done != total:
        raise DataError(f"{name}: download of {url} stopped after {done} of {total} bytes; try again or place "
                        f"{dest.name} in {dest.parent} by hand")
    return b"".join(chunks)


def extract_archive(archive: Path, folder: Path, members: Iterable[str]) -> list[Path]:
    """Extract only ``members`` from a tar archive into ``folder``; refuse absolute or ``..`` member paths.

    Everything is read and checked before anything is written, so a refused archive leaves no files behind.
    """
    wanted, contents = set(members), {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name.replace("\\", "/")).parts
                if member.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DataError(f"refusing to extract {archive.name}: member {member.name!r} has an unsafe "
                                    "path (absolute or with '..')")
                if member.name not in wanted:
                    log.debug("skipping member %s of %s", member.name, archive.name)
                    continue
                if not member.isfile():
                    raise DataError(f"refusing to extract {archive.name}: {member.name!r} is not a regular file")
                contents[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"archive {archive.name} in {archive.parent} is corrupt ({err}); delete it and "
                        "download it again") from err
    missing = sorted(wanted - set(contents))
    if missing:
        raise DataError(f"archive {archive.name} in {archive.parent} lacks {', '.join(missing)}")
    for member_name, data in contents.items():
        atomic_write_bytes(folder / member_name, data)
    return [folder / m for m in sorted(contents)]


def _download_file(name: str, remote: RemoteFile, folder: Path, base_url: str | None,
                   progress: Progress | None) -> None:
    dest = folder / remote.name
    if dest.is_file() and file_md5(dest) == remote.md5:
        log.info("%s: %s already present and verified", name, remote.name)
        return
    url = base_url.rstrip("/") + "/" + remote.name if base_url else remote.url
    log.info("%s: downloading %s", name, url)
    data = _fetch(url, dest, name, progress)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 != remote.md5:
        raise DataError(f"{name}: {remote.name} from {url} has MD5 {md5}, expected {remote.md5}; not saved")
    atomic_write_bytes(dest, data)


def download_dataset(name: str, *, folder: str | Path | None = None, progress: Progress | None = None,
                     base_url: str | None = None) -> Path:
    """Fetch the files of dataset ``name`` into ``folder`` (default ``data_home()/name``) and verify them.

    Files already present with the right MD5 are kept. ``base_url`` replaces the directory of every URL (a
    mirror). ``progress(file_name, bytes_done, total_or_None)`` is called while downloading. Returns the folder.
    """
    spec = dataset_info(name)
    target = Path(folder) if folder is not None else data_home() / name
    if not spec.needs_files:
        log.info("%s needs no files; nothing to download", name)
        return target
    if name == "cifar10" and all((target / m).is_file() for m in CIFAR_MEMBERS):
        log.info("cifar10: the extracted batches are already in %s", target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for remote in SOURCES[name]:
        _download_file(name, remote, target, base_url, progress)
    if name == "cifar10":
        extract_archive(target / CIFAR_ARCHIVE, target, CIFAR_MEMBERS)
    log.info("%s: files ready in %s", name, target)
    return target


def _file_status(path: Path, known_md5: str | None) -> dict[str, Any]:
    if not path.is_file():
        return {"present": False, "size": None, "md5": None}
    md5 = "unknown" if known_md5 is None else ("ok" if file_md5(path) == known_md5 else "mismatch")
    return {"present": True, "size": path.stat().st_size, "md5": md5}


def verify_dataset(name: str, folder: str | Path | None = None) -> dict[str, Any]:
    """What is on disk for ``name``: per-file presence, size and MD5 status (ok/mismatch/unknown), and whether
    both splits load. Missing or corrupt files are reported, never raised."""
    spec = dataset_info(name)
    target = Path(folder) if folder is not None else data_home() / name
    report: dict[str, Any] = {"dataset": name, "folder": str(target), "needs_files": spec.needs_files,
                              "files": {}, "loads": True, "error": None}
    if not spec.needs_files:
        report["message"] = f"{name} needs no files; nothing to verify"
        return report
    known = {r.name: r.md5 for r in SOURCES.get(name, ())}
    names = list(spec.files) + [f for f in known if f not in spec.files and (target / f).is_file()]
    report["files"] = {f: _file_status(target / f, known.get(f)) for f in names}
    try:
        for split in ("train", "test"):
            read_split(name, split, target)
    except DataError as err:
        report.update(loads=False, error=str(err))
    return report


def missing_files(name: str, folder: str | Path | None = None) -> list[str]:
    """Expected files absent from the dataset's folder ([] for built-in datasets). Presence only, so it is instant;
    ``verify_dataset`` checks contents. A decompressed IDX file counts for its ``.gz``."""
    spec = dataset_info(name)
    target = Path(folder) if folder is not None else data_home() / name
    return [f for f in spec.files
            if not (target / f).exists() and not (f.endswith(".gz") and (target / f[:-3]).exists())]
