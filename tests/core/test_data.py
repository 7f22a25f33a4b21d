"""Tests for core.data: the registry, generated datasets, file parsers on tiny generated files, download/verify.

Nothing is downloaded: file datasets are written in their exact formats into tmp_path, and the download path
runs against file:// URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import DATASETS, Dataset, dataset_info, download_dataset, load_dataset, verify_dataset
from core.data import files as data_files
from core.data.patches import generate_patches, patch_features
from core.errors import ConfigError, DataError

GENERATED = sorted(name for name, spec in DATASETS.items() if not spec.needs_files)
FILE_SETS = sorted(name for name, spec in DATASETS.items() if spec.needs_files)
TOY = sorted(name for name, spec in DATASETS.items() if spec.kind == "toy")
SMALL = {"moons": {"n": 120}, "circles": {"n": 120}, "spirals": {"n": 120}, "xor": {"n": 120},
         "blobs": {"n": 120}, "patches": {"n_train": 30, "n_test": 20}, "digits": {}}


def test_registry_lists_every_dataset() -> None:
    expected = {"digits", "moons", "circles", "spirals", "xor", "blobs", "patches",
                "mnist", "fashion-mnist", "cifar10", "svhn"}
    assert expected == set(DATASETS)
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.num_classes == len(spec.classes)
        assert spec.kind in ("image", "toy", "theory") and spec.needs_files == bool(spec.files)
        assert dataset_info(name) is spec


# --------------------------------------------------------------------------------------- generated datasets

@pytest.mark.parametrize("name", GENERATED)
def test_generated_shapes_dtypes_ranges(name: str) -> None:
    spec = dataset_info(name)
    ds = load_dataset(name, "test", **SMALL[name])
    assert isinstance(ds, Dataset) and ds.name == name and ds.split == "test"
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64 and ds.y.is_contiguous()
    assert ds.input_shape == spec.input_shape and len(ds) == len(ds.x) > 0
    assert ds.num_classes == spec.num_classes and set(ds.y.tolist()) <= set(range(spec.num_classes))
    assert torch.isfinite(ds.x).all()
    if spec.bounds is None:
        assert ds.bounds is None and spec.kind == "theory"
    else:
        assert ds.bounds == (0.0, 1.0) and ds.x.min() >= 0 and ds.x.max() <= 1


@pytest.mark.parametrize("name", GENERATED)
def test_generated_is_deterministic_and_splits_differ(name: str) -> None:
    first, second = load_dataset(name, "train", **SMALL[name]), load_dataset(name, "train", **SMALL[name])
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)
    assert first.params == second.params
    test = load_dataset(name, "test", **SMALL[name])
    assert len(first) != len(test) or not torch.equal(first.x, test.x)
    again = load_dataset(name, "train", **first.params)
    assert torch.equal(again.x, first.x)


@pytest.mark.parametrize("name", TOY)
def test_toy_points_sit_inside_the_unit_square_and_seed_matters(name: str) -> None:
    ds = load_dataset(name, "train")
    assert len(ds) == 1000 and ds.x.shape == (1000, 2)
    inside = ((ds.x > 0.05) & (ds.x < 0.95)).all(dim=1).float().mean()
    assert inside >= 0.99
    counts = torch.bincount(ds.y)
    assert counts.max() - counts.min() <= 1
    other = load_dataset(name, "train", n=1000, seed=1)
    assert not torch.equal(other.x, ds.x)


def test_blobs_centers_param_sets_the_classes() -> None:
    ds = load_dataset("blobs", "train", n=100, centers=5)
    assert ds.num_classes == 5 and set(ds.y.tolist()) == set(range(5))


def test_digits_split_is_fixed_and_stratified() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and train.input_shape == (1, 8, 8)
    full_counts = np.bincount(load_digits().target)
    train_counts, test_counts = torch.bincount(train.y).numpy(), torch.bincount(test.y).numpy()
    assert (train_counts + test_counts == full_counts).all()
    assert np.abs(test_counts / full_counts - 0.25).max() < 0.01
    assert train.classes == tuple(str(i) for i in range(10))


# --------------------------------------------------------------------------------------------------- patches

def test_patch_features_are_orthonormal_and_seeded() -> None:
    u, v = patch_features(4, 64, seed=0)
    features = torch.cat([u, v]).double()
    assert u.shape == v.shape == (4, 64)
    assert torch.allclose(features @ features.T, torch.eye(8, dtype=torch.float64), atol=1e-6)
    assert torch.equal(patch_features(4, 64, 0)[0], u) and not torch.equal(patch_features(4, 64, 1)[0], u)


def test_patch_samples_follow_the_model() -> None:
    alpha, beta, sigma = 1.2, 0.34, 0.03
    sample = generate_patches(50, k=4, d=64, P=64, n_robust=1, n_nonrobust=60, alpha=alpha, beta=beta,
                              sigma_n=sigma, seed=3, stream="train")
    u, v = patch_features(4, 64, seed=3)
    assert ((sample.roles == 1).sum(1) == 1).all() and ((sample.roles == 2).sum(1) == 60).all()
    coeff_u = torch.einsum("npd,kd->npk", sample.x.double(), u.double())
    coeff_v = torch.einsum("npd,kd->npk", sample.x.double(), v.double())
    rows = torch.arange(50)
    robust = sample.roles.eq(1).float().argmax(dim=1)
    assert torch.allclose(coeff_u[rows, robust, sample.y], torch.full((50,), alpha, dtype=torch.float64), atol=1e-5)
    expected_u = torch.zeros_like(coeff_u)
    expected_u[rows, robust, sample.y] = alpha
    assert (coeff_u - expected_u).abs().max() < 1e-5
    expected_v = (sample.roles == 2).unsqueeze(-1) * beta * torch.nn.functional.one_hot(sample.y, 4)[:, None, :]
    assert (coeff_v - expected_v).abs().max() < 1e-5
    noise = sample.x[sample.roles == 0]
    assert abs(noise.std().item() - sigma * (56 / 64) ** 0.5) < 0.002


def test_patches_dataset_uses_the_shared_features() -> None:
    train = load_dataset("patches", "train", n_train=40, seed=5)
    test = load_dataset("patches", "test", n_test=30, seed=5)
    assert train.input_shape == (64, 64) and train.bounds is None and len(train) == 40 and len(test) == 30
    u, _ = patch_features(4, 64, seed=5)
    for ds in (train, test):
        best = torch.einsum("npd,nd->np", ds.x, u[ds.y]).max(dim=1).values
        assert torch.allclose(best, torch.full_like(best, 1.2), atol=1e-4)


@pytest.mark.parametrize("params", [{"k": 40}, {"n_robust": 5, "n_nonrobust": 60}, {"sigma_n": -1.0},
                                    {"n_train": 0}], ids=["2k>d", "too-many-patches", "negative-noise", "n0"])
def test_patch_params_are_validated(params: dict) -> None:
    with pytest.raises(ConfigError):
        load_dataset("patches", "train", **params)


# ----------------------------------------------------------------------------------- errors and the Dataset

@pytest.mark.parametrize("call, error, text", [
    (lambda: load_dataset("imagenet"), DataError, "available"),
    (lambda: load_dataset("moons", "val"), ConfigError, "split"),
    (lambda: load_dataset("moons", colour=3), ConfigError, "colour"),
    (lambda: load_dataset("digits", n=3), ConfigError, "allowed: none"),
    (lambda: load_dataset("moons", n=-5), ConfigError, "n=-5"),
    (lambda: load_dataset("moons", n="many"), ConfigError, "integer"),
    (lambda: load_dataset("moons", n=2.5), ConfigError, "integer"),
    (lambda: load_dataset("circles", noise=-0.1), ConfigError, "noise"),
    (lambda: load_dataset("blobs", centers=1), ConfigError, "centers"),
    (lambda: load_dataset("mnist", n=0), ConfigError, "n=0"),
], ids=["unknown-dataset", "bad-split", "unknown-param", "digits-no-params", "negative-n", "n-not-number",
        "n-fraction", "negative-noise", "one-centre", "file-n-zero"])
def test_bad_requests_raise_one_line_errors(call, error: type, text: str) -> None:
    with pytest.raises(error, match=text) as info:
        call()
    assert "\n" not in str(info.value)


def test_params_are_coerced_from_strings() -> None:
    ds = load_dataset("moons", "train", n="50", noise="0.2", seed="3")
    assert ds.params == {"n": 50, "noise": 0.2, "seed": 3} and len(ds) == 50


def test_subset_by_count_and_indices() -> None:
    ds = load_dataset("moons", "test", n=100)
    assert len(ds.subset(10)) == 10 and torch.equal(ds.subset(10).x, ds.x[:10])
    assert len(ds.subset(1000)) == 100 and ds.subset() is ds
    picked = ds.subset(indices=[5, 2, 7])
    assert torch.equal(picked.y, ds.y[[5, 2, 7]]) and picked.params == ds.params
    assert len(ds.subset(indices=ds.y == 0)) == int((ds.y == 0).sum())
    for kwargs in ({"n": -1}, {"n": 2, "indices": [1]}, {"indices": [100]}):
        with pytest.raises(ConfigError):
            ds.subset(**kwargs)


# --------------------------------------------------------------------------------------- tiny file datasets

def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 + array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_idx_set(folder: Path, rng: np.random.Generator, sizes=(7, 4)) -> dict[str, tuple[np.ndarray, ...]]:
    folder.mkdir(parents=True)
    made = {}
    for split, n in zip(("train", "test"), sizes):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        image_file, label_file = data_files.IDX_FILES[split]
        (folder / image_file).write_bytes(gzip.compress(_idx_bytes(images)))
        (folder / label_file).write_bytes(gzip.compress(_idx_bytes(labels)))
        made[split] = (images[:, None], labels)
    return made


def _write_cifar(folder: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, ...]]:
    batch_dir = folder / data_files.CIFAR_DIR
    batch_dir.mkdir(parents=True)
    made = {}
    for split, files in data_files.CIFAR_BATCHES.items():
        images = rng.integers(0, 256, (2 * len(files), 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 2 * len(files), dtype=np.uint8)
        for i, file_name in enumerate(files):
            records = np.concatenate([labels[2 * i:2 * i + 2, None], images[2 * i:2 * i + 2].reshape(2, -1)], 1)
            (batch_dir / file_name).write_bytes(records.tobytes())
        made[split] = (images, labels)
    return made


def _write_svhn(folder: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, ...]]:
    from scipy.io import savemat

    folder.mkdir(parents=True)
    made = {}
    for split, n in (("train", 6), ("test", 5)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.array([0, 1, 9, 0, 5, 3][:n], dtype=np.int64)
        mat_labels = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        savemat(folder / data_files.SVHN_FILES[split], {"X": images.transpose(2, 3, 1, 0), "y": mat_labels})
        made[split] = (images, digits)
    return made


WRITERS = {"mnist": _write_idx_set, "fashion-mnist": _write_idx_set, "cifar10": _write_cifar, "svhn": _write_svhn}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ATLAS_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", FILE_SETS)
def test_file_dataset_round_trips_exactly(name: str, data_dir: Path) -> None:
    made = WRITERS[name](data_dir / name, np.random.default_rng(0))
    for split, (images, labels) in made.items():
        ds = load_dataset(name, split)
        assert ds.x.dtype == torch.float32 and ds.input_shape == dataset_info(name).input_shape
        assert torch.equal((ds.x * 255).round().to(torch.uint8), torch.from_numpy(images))
        assert ds.y.tolist() == labels.astype(np.int64).tolist()
        subset = load_dataset(name, split, n=2)
        assert len(subset) == 2 and torch.equal(subset.x, ds.x[:2]) and subset.params == {"n": 2}


def test_svhn_label_ten_means_zero(data_dir: Path) -> None:
    _write_svhn(data_dir / "svhn", np.random.default_rng(1))
    assert load_dataset("svhn", "train").y.tolist() == [0, 1, 9, 0, 5, 3]


def _mat_without_y(path: Path) -> None:
    from scipy.io import savemat

    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8)})


CORRUPTIONS = {  # id -> (dataset, file, how to corrupt it, what the message says)
    "mnist-truncated-gzip": ("mnist", "train-images-idx3-ubyte.gz",
                             lambda p: p.write_bytes(p.read_bytes()[:-20]), "gzip"),
    "mnist-bad-magic": ("mnist", "t10k-images-idx3-ubyte.gz", lambda p: p.write_bytes(
        gzip.compress(_idx_bytes(np.zeros((2, 28, 28), np.uint8), magic=0x0802))), "magic"),
    "fashion-short-data": ("fashion-mnist", "train-images-idx3-ubyte.gz", lambda p: p.write_bytes(
        gzip.compress(_idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10])), "data bytes"),
    "cifar-record-size": ("cifar10", "cifar-10-batches-bin/data_batch_1.bin",
                          lambda p: p.write_bytes(p.read_bytes() + b"\x00" * 5), "3073-byte records"),
    "svhn-missing-key": ("svhn", "test_32x32.mat", _mat_without_y, "'y'"),
    "svhn-not-a-mat": ("svhn", "train_32x32.mat", lambda p: p.write_bytes(b"not a MATLAB file " * 10), "MATLAB"),
}


@pytest.mark.parametrize("name, file_name, corrupt, reason", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_file_names_file_and_command(name, file_name, corrupt, reason, data_dir: Path) -> None:
    WRITERS[name](data_dir / name, np.random.default_rng(2))
    corrupt(data_dir / name / file_name)
    split = "test" if file_name.startswith(("t10k", "test")) else "train"
    with pytest.raises(DataError, match=reason) as info:
        load_dataset(name, split)
    message = str(info.value)
    assert Path(file_name).name in message and f"python -m core data download {name}" in message
    assert verify_dataset(name)["loads"] is False


@pytest.mark.parametrize("name", FILE_SETS)
def test_missing_folder_and_file_are_explained(name: str, data_dir: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(name, "train")
    assert str(data_dir / name) in str(info.value) and f"python -m core data download {name}" in str(info.value)
    WRITERS[name](data_dir / name, np.random.default_rng(3))
    missing = data_dir / name / dataset_info(name).files[-1]
    missing.unlink()
    with pytest.raises(DataError, match="is missing") as info:
        load_dataset(name, "test")
    assert missing.name in str(info.value) and str(missing.parent) in str(info.value)


def test_mnist_accepts_decompressed_idx(data_dir: Path) -> None:
    made = _write_idx_set(data_dir / "mnist", np.random.default_rng(4))
    for path in (data_dir / "mnist").glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert load_dataset("mnist", "test").y.tolist() == made["test"][1].tolist()


# ------------------------------------------------------------------------------------------ verify / download

def test_verify_reports_present_missing_and_md5(data_dir: Path) -> None:
    report = verify_dataset("mnist")
    assert report["loads"] is False and not any(f["present"] for f in report["files"].values())
    _write_idx_set(data_dir / "mnist", np.random.default_rng(5))
    report = verify_dataset("mnist")
    assert report["loads"] is True and report["error"] is None
    assert all(f["present"] and f["size"] > 0 and f["md5"] == "mismatch" for f in report["files"].values())
    _write_svhn(data_dir / "svhn", np.random.default_rng(5))
    assert verify_dataset("svhn", folder=data_dir / "svhn")["loads"] is True
    _write_cifar(data_dir / "cifar10", np.random.default_rng(5))
    cifar = verify_dataset("cifar10")
    assert cifar["loads"] and {f["md5"] for f in cifar["files"].values()} == {"unknown"}


def test_datasets_without_files_need_no_download(data_dir: Path) -> None:
    assert verify_dataset("digits")["needs_files"] is False
    assert download_dataset("moons") == data_dir / "moons" and not (data_dir / "moons").exists()


def _serve(monkeypatch: pytest.MonkeyPatch, name: str, source: Path) -> None:
    """Point SOURCES[name] at file:// URLs of the files in ``source``, with their real MD5s."""
    remotes = tuple(data_files.RemoteFile(r.name, (source / r.name).as_uri(),
                                          hashlib.md5((source / r.name).read_bytes()).hexdigest())
                    for r in data_files.SOURCES[name])
    monkeypatch.setitem(data_files.SOURCES, name, remotes)


def test_download_fetches_verifies_and_loads(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    made = _write_idx_set(tmp_path / "mirror", np.random.default_rng(6))
    _serve(monkeypatch, "mnist", tmp_path / "mirror")
    seen: list[tuple[str, int, int | None]] = []
    folder = download_dataset("mnist", progress=lambda *args: seen.append(args))
    assert folder == data_dir / "mnist" and {s[0] for s in seen} == set(dataset_info("mnist").files)
    assert load_dataset("mnist", "train").y.tolist() == made["train"][1].tolist()
    assert all(f["md5"] == "ok" for f in verify_dataset("mnist")["files"].values())


def test_download_rejects_wrong_md5_and_reports_network_failure(data_dir: Path, tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "mirror", np.random.default_rng(7))
    with pytest.raises(DataError, match="MD5"):
        download_dataset("fashion-mnist", base_url=(tmp_path / "mirror").as_uri())
    assert not (data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()
    with pytest.raises(DataError, match="could not download") as info:
        download_dataset("svhn", base_url=(tmp_path / "nowhere").as_uri())
    assert "nowhere/train_32x32.mat" in str(info.value) and str(data_dir / "svhn") in str(info.value)


def _tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for member_name, data in members.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar_download_extracts_only_expected_members(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    made = _write_cifar(tmp_path / "built", np.random.default_rng(8))
    members = {m: (tmp_path / "built" / m).read_bytes() for m in data_files.CIFAR_MEMBERS}
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    (tmp_path / "mirror").mkdir()
    _tar_gz(tmp_path / "mirror" / data_files.CIFAR_ARCHIVE, members)
    _serve(monkeypatch, "cifar10", tmp_path / "mirror")
    download_dataset("cifar10")
    assert not (data_dir / "cifar10" / "cifar-10-batches-bin" / "readme.html").exists()
    assert load_dataset("cifar10", "test").y.tolist() == made["test"][1].tolist()


@pytest.mark.parametrize("evil", ["../evil.bin", "/tmp/evil.bin", "cifar-10-batches-bin/../../evil.bin"],
                         ids=["dotdot", "absolute", "nested-dotdot"])
def test_tar_extraction_refuses_unsafe_members(evil: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive.tar.gz"
    _tar_gz(archive, {data_files.CIFAR_MEMBERS[0]: b"x" * 3073, evil: b"boom"})
    with pytest.raises(DataError, match="unsafe"):
        data_files.extract_archive(archive, tmp_path / "out", data_files.CIFAR_MEMBERS)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.bin").exists()
