"""Architectures, checkpoint I/O and the smoothed ReLU: shapes, invariants, round trips and every refusal."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from core.errors import CheckpointError, ConfigError
from core.models import (
    ARCHS,
    CHECKPOINT_FORMAT,
    Normalize,
    build_model,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    smoothed_relu,
)

# Per architecture: small kwargs (fast on CPU) and the input shape of one sample.
ARCH_CASES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "mlp": ({"hidden": (16, 16)}, (2,)),
    "smallcnn": ({}, (1, 8, 8)),
    "lenet": ({}, (1, 28, 28)),
    "preact_resnet18": ({"width": 8}, (3, 32, 32)),
    "wideresnet": ({"depth": 16, "widen_factor": 2}, (3, 32, 32)),
    "patchnet": ({"d": 16}, (8, 16)),
}
NORMALISED_ARCHS = [arch for arch in ARCH_CASES if arch != "patchnet"]

FORWARD_CASES = {
    "mlp-2d": ("mlp", {}, (2,), 2),
    "mlp-softplus": ("mlp", {"activation": "softplus", "hidden": [8]}, (2,), 2),
    "smallcnn-1x8x8": ("smallcnn", {}, (1, 8, 8), 10),
    "smallcnn-1x28x28": ("smallcnn", {"image_size": 28}, (1, 28, 28), 10),
    "smallcnn-3x32x32": ("smallcnn", {"in_channels": 3, "image_size": 32}, (3, 32, 32), 10),
    "lenet-1x28x28": ("lenet", {}, (1, 28, 28), 10),
    "preact_resnet18-3x32x32": ("preact_resnet18", {}, (3, 32, 32), 10),
    "wideresnet-16-2-3x32x32": ("wideresnet", {"depth": 16, "widen_factor": 2}, (3, 32, 32), 10),
    "patchnet-64x64": ("patchnet", {}, (64, 64), 4),
}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # These networks are tiny; on a busy 2-core runner intra-op threads wait on each other and a forward pass
    # takes ~50× longer than on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(arch: str, seed: int = 0, **overrides) -> torch.nn.Module:
    return build_model(arch, seed=seed, **{**ARCH_CASES[arch][0], **overrides})


def _input(arch: str, batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand((batch, *ARCH_CASES[arch][1]), generator=torch.Generator().manual_seed(seed))


def test_every_registered_arch_has_a_test_case() -> None:
    assert set(ARCH_CASES) == set(ARCHS)


@pytest.mark.parametrize("case", list(FORWARD_CASES), ids=list(FORWARD_CASES))
def test_forward_shape_and_features(case: str) -> None:
    arch, kwargs, sample_shape, num_classes = FORWARD_CASES[case]
    model = build_model(arch, seed=0, **kwargs)
    x = torch.rand((2, *sample_shape), generator=torch.Generator().manual_seed(0))
    logits = model(x)
    assert logits.shape == (2, num_classes)
    assert model.num_classes == num_classes
    assert model.features(x).shape[0] == 2
    assert model.arch_name == arch


@pytest.mark.parametrize("arch", list(ARCH_CASES), ids=list(ARCH_CASES))
def test_outputs_are_raw_logits(arch: str) -> None:
    model = _build(arch)
    logits = model(_input(arch, batch=4))
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits.sum(dim=1), torch.ones(4), atol=1e-3)


@pytest.mark.parametrize("arch", NORMALISED_ARCHS, ids=NORMALISED_ARCHS)
def test_normalisation_is_inside_the_model(arch: str) -> None:
    plain = _build(arch).eval()
    shifted = _build(arch, mean=0.5, std=0.25).eval()
    assert isinstance(plain.normalize, Normalize)
    assert {"normalize.mean", "normalize.std"} <= set(plain.state_dict())
    x = _input(arch)
    assert not torch.allclose(plain(x), shifted(x))
    assert torch.allclose(plain(x), shifted(x * 0.25 + 0.5), atol=1e-4)


@pytest.mark.parametrize("arch", list(ARCH_CASES), ids=list(ARCH_CASES))
def test_same_seed_same_weights_and_global_rng_untouched(arch: str) -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first, second = _build(arch, seed=7), _build(arch, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    if arch != "patchnet":  # patchnet's init depends on init_seed only, by design
        other = _build(arch, seed=8)
        assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters()))


def test_patchnet_init_seed_and_shapes() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    net = build_model("patchnet", k=3, d=5, m=2, init_seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert net.weight.shape == (3, 2, 5)
    assert torch.equal(net.weight, build_model("patchnet", k=3, d=5, m=2, init_seed=4).weight)
    assert not torch.equal(net.weight, build_model("patchnet", k=3, d=5, m=2, init_seed=5).weight)
    assert abs(float(build_model("patchnet", sigma0=0.05).weight.detach().std()) - 0.05) < 0.01
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    acts = net.patch_activations(x)
    assert acts.shape == (4, 3, 2, 6)
    assert torch.allclose(acts[1, 2, 0, 3], net.weight[2, 0] @ x[1, 3])
    expected = smoothed_relu(acts, 3, 0.5).sum(dim=(2, 3))
    assert torch.allclose(net(x), expected)


def test_build_model_rejects_unknown_arch_and_kwargs() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'nope'"):
        build_model("nope")
    with pytest.raises(ConfigError, match="'depthh'"):
        build_model("wideresnet", depthh=16)
    with pytest.raises(ConfigError, match="depth must be 6"):
        build_model("wideresnet", depth=17)
    with pytest.raises(ConfigError, match="activation"):
        build_model("mlp", activation="gelu")
    with pytest.raises(ConfigError, match="std must be positive"):
        build_model("smallcnn", std=0.0)
    with pytest.raises(ConfigError, match="JSON-able"):
        build_model("mlp", hidden=(torch.tensor(3),))


# ----------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("arch", list(ARCH_CASES), ids=list(ARCH_CASES))
def test_checkpoint_round_trip(arch: str, tmp_path: Path) -> None:
    model = _build(arch, seed=3)
    if arch in ("preact_resnet18", "wideresnet"):
        model.train()(_input(arch, batch=4))  # moves the BatchNorm running stats away from their defaults
    model.eval()
    meta = {"dataset": "toy", "method": "erm", "hparams": {"lr": 0.1}, "seed": 3, "metrics": {"acc": 0.5}}
    weights = save_checkpoint(model, meta, tmp_path / "run" / "model.json")
    assert weights == tmp_path / "run" / "model.safetensors"
    loaded, loaded_meta = load_checkpoint(tmp_path / "run" / "model")
    assert not loaded.training
    x = _input(arch)
    assert torch.equal(model(x), loaded(x))
    for key, value in meta.items():
        assert loaded_meta[key] == value
    assert loaded_meta["arch"] == arch and loaded.arch_kwargs == model.arch_kwargs == loaded_meta["arch_kwargs"]
    assert loaded_meta["format"] == CHECKPOINT_FORMAT
    assert set(loaded_meta["versions"]) == {"torch", "atlas", "python"}
    assert loaded_meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert read_checkpoint_meta(weights) == loaded_meta
    # Conv weights are channels-last in memory (faster oneDNN kernels on CPU), built or loaded; files do not depend
    # on it: a contiguous copy of the model writes the same tensors.
    convs = [name for name, p in model.named_parameters() if p.dim() == 4]
    assert bool(convs) == (arch not in ("mlp", "patchnet"))
    for m in (model, loaded):
        params = dict(m.named_parameters())
        assert all(params[n].is_contiguous(memory_format=torch.channels_last) for n in convs)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert not convs or not dict(plain.named_parameters())[convs[-1]].is_contiguous(memory_format=torch.channels_last)
    other = save_checkpoint(plain, meta, tmp_path / "plain" / "model.json")
    written, again = safetensors.torch.load_file(weights), safetensors.torch.load_file(other)
    assert written.keys() == again.keys() and all(torch.equal(written[k], again[k]) for k in written)
    assert weights.read_bytes() == other.read_bytes()


@pytest.mark.parametrize("arch", ["smallcnn", "lenet"])
def test_flatten_hands_a_channels_last_gradient_back(arch: str) -> None:
    """LayoutFlatten: same logits and input gradient as nn.Flatten, but the ReLU before it gets its gradient
    channels-last (a contiguous one takes a strided path about 15× slower on CPU); double backward still works."""
    model = _build(arch, seed=1).eval()
    plain = copy.deepcopy(model)
    plain.penultimate[0] = torch.nn.Flatten()
    assert model.state_dict().keys() == plain.state_dict().keys()
    seen = []
    model.body[-1].register_full_backward_hook(lambda m, gi, go: seen.append(go[0]))
    x = _input(arch).requires_grad_(True)
    grads = []
    for m in (model, plain):
        (g,) = torch.autograd.grad(m(x).logsumexp(1).sum(), x, create_graph=True)
        grads.append(g)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0
    (hvp,) = torch.autograd.grad((grads[0] * torch.ones_like(x)).sum(), x)
    assert hvp.shape == x.shape and torch.isfinite(hvp).all()


def test_the_same_weights_always_make_the_same_file(tmp_path: Path) -> None:
    """safetensors orders its header's metadata keys at random per save; without canonical headers about half of
    these files differ."""
    model = build_model("smallcnn", seed=0)
    files = {save_checkpoint(model, {"dataset": "digits"}, tmp_path / str(i)).read_bytes() for i in range(8)}
    assert len(files) == 1
    blob = files.pop()
    (length,) = struct.unpack("<Q", blob[:8])
    assert length % 8 == 0 and list(json.loads(blob[8:8 + length])["__metadata__"]) == ["arch", "format"]
    loaded = safetensors.torch.load(blob)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_default_smallcnn_checkpoint_is_small(tmp_path: Path) -> None:
    model = build_model("smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) <= 200_000
    weights = save_checkpoint(model, {"dataset": "digits"}, tmp_path / "digits_smallcnn")
    assert weights.stat().st_size <= 2 * 2**20


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JSON-able"):
        save_checkpoint(_build("mlp"), {"metrics": torch.tensor(1.0)}, tmp_path / "m")
    with pytest.raises(ConfigError, match="build_model"):
        save_checkpoint(torch.nn.Linear(2, 2), {}, tmp_path / "m")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A valid smallcnn checkpoint; returns the path of its .safetensors file."""
    return save_checkpoint(build_model("smallcnn", seed=0), {"dataset": "digits"}, tmp_path / "ckpt")


def _rewrite_weights(weights: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and fix the JSON's sha256, so only the property under test is wrong."""
    blob = safetensors.torch.save(tensors, metadata={"format": CHECKPOINT_FORMAT, "arch": "smallcnn"})
    weights.write_bytes(blob)
    _edit_meta(weights, sha256=hashlib.sha256(blob).hexdigest())


def _edit_meta(weights: Path, **changes) -> None:
    json_path = weights.with_suffix(".json")
    meta = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**meta, **changes}))


class _MarkerPayload:
    """Unpickling this creates ``path``: proof that a loader executed code from the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_refuses_a_pickle_and_executes_nothing(saved: Path, tmp_path: Path) -> None:
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_MarkerPayload(control)))
    assert control.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "marker"
    saved.write_bytes(pickle.dumps({"weights": _MarkerPayload(marker)}))
    with pytest.raises(CheckpointError, match=r"is a pickle/zip \(torch.save\) file, not safetensors; refusing"):
        load_checkpoint(saved)
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [True, False], ids=["torch-save-zip", "torch-save-legacy"])
def test_refuses_torch_save_files(saved: Path, zipfile: bool) -> None:
    torch.save(build_model("smallcnn").state_dict(), saved, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(CheckpointError, match="pickle/zip .* not safetensors; refusing to load it"):
        load_checkpoint(saved)


def test_refuses_a_truncated_file(saved: Path) -> None:
    blob = saved.read_bytes()
    saved.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="is truncated"):
        load_checkpoint(saved)
    saved.write_bytes(blob[:20])
    with pytest.raises(CheckpointError, match="not a safetensors file.* header is .* larger than the whole file"):
        load_checkpoint(saved)


def test_refuses_a_lying_header_length(saved: Path) -> None:
    blob = saved.read_bytes()
    saved.write_bytes(struct.pack("<Q", 3 * len(blob)) + blob[8:])
    with pytest.raises(CheckpointError, match=f"header is {3 * len(blob)} bytes long, larger than the whole file"):
        load_checkpoint(saved)


def test_refuses_trailing_bytes_and_a_non_json_header(saved: Path) -> None:
    blob = saved.read_bytes()
    saved.write_bytes(blob + b"\0" * 16)
    with pytest.raises(CheckpointError, match="size mismatch, 16 trailing bytes"):
        load_checkpoint(saved)
    saved.write_bytes(struct.pack("<Q", 4) + b"abcd")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        load_checkpoint(saved)


def test_refuses_missing_files(saved: Path) -> None:
    saved.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match=r"ckpt\.json is missing"):
        load_checkpoint(saved)
    saved.unlink()
    with pytest.raises(CheckpointError, match=r"ckpt\.safetensors are missing"):
        load_checkpoint(saved.with_suffix(""))


def test_refuses_bad_json(saved: Path) -> None:
    json_path = saved.with_suffix(".json")
    json_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint_meta(saved)
    json_path.write_text(json.dumps({"format": CHECKPOINT_FORMAT, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match=r"lacks arch, arch_kwargs \(arch: the registered architecture.*"
                                              r"arch_kwargs: its constructor"):
        load_checkpoint(saved)
    unknown_arch = {"format": CHECKPOINT_FORMAT, "sha256": "0" * 64, "arch": "vit", "arch_kwargs": {}}
    json_path.write_text(json.dumps(unknown_arch))
    with pytest.raises(CheckpointError, match="unknown architecture 'vit'"):
        load_checkpoint(saved)


def test_refuses_unknown_or_bad_kwargs_in_json(saved: Path) -> None:
    _edit_meta(saved, arch_kwargs={"widthh": 3})
    with pytest.raises(CheckpointError, match="does not take 'widthh'"):
        read_checkpoint_meta(saved)
    _edit_meta(saved, arch_kwargs={"width": -1})
    with pytest.raises(CheckpointError, match="width must be an integer"):
        load_checkpoint(saved)


def test_refuses_weights_that_do_not_match_their_json(saved: Path) -> None:
    blob = bytearray(saved.read_bytes())
    blob[-1] ^= 0xFF
    saved.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="weights do not match their metadata"):
        load_checkpoint(saved)


def test_refuses_a_shape_mismatch_naming_tensor_and_shapes(saved: Path) -> None:
    _edit_meta(saved, arch_kwargs={"width": 16})
    with pytest.raises(CheckpointError, match=r"'body\.0\.weight' has shape \(32, 1, 3, 3\).*expects \(16, 1, 3, 3\)"):
        load_checkpoint(saved)


def test_refuses_missing_and_unexpected_tensors(saved: Path) -> None:
    tensors = safetensors.torch.load(saved.read_bytes())
    _rewrite_weights(saved, {**tensors, "extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="unexpected tensor 'extra.weight'"):
        load_checkpoint(saved)
    _rewrite_weights(saved, {k: v for k, v in tensors.items() if k != "head.bias"})
    with pytest.raises(CheckpointError, match="missing tensor 'head.bias'"):
        load_checkpoint(saved)


def test_refuses_nan_and_non_float_tensors(saved: Path) -> None:
    tensors = safetensors.torch.load(saved.read_bytes())
    broken = tensors["penultimate.1.weight"].clone()
    broken[0, 0] = float("nan")
    _rewrite_weights(saved, {**tensors, "penultimate.1.weight": broken})
    with pytest.raises(CheckpointError, match="'penultimate.1.weight' contains NaN or Inf"):
        load_checkpoint(saved)
    _rewrite_weights(saved, {**tensors, "head.bias": torch.zeros(10, dtype=torch.int32)})
    with pytest.raises(CheckpointError, match="'head.bias' has dtype I32, expected a floating dtype"):
        load_checkpoint(saved)


def test_refuses_files_over_max_bytes(saved: Path) -> None:
    size = saved.stat().st_size
    with pytest.raises(CheckpointError, match=f"{size} bytes, more than the allowed max_bytes=1000"):
        load_checkpoint(saved, max_bytes=1000)
    model, _ = load_checkpoint(saved, max_bytes=size)
    assert model.num_classes == 10


def test_loading_leaves_the_global_rng_alone(saved: Path) -> None:
    before = torch.get_rng_state()
    load_checkpoint(saved)
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------------------------- smoothed ReLU


@pytest.mark.parametrize(("q", "rho"), [(3, 0.5), (4, 0.3), (3.5, 1.0)], ids=["q3-rho0.5", "q4-rho0.3", "q3.5-rho1"])
def test_smoothed_relu_values_and_continuity(q: float, rho: float) -> None:
    z = torch.tensor([-1.0, 0.0, rho / 2, rho, 2.0], dtype=torch.float64)
    expected = [0.0, 0.0, (rho / 2) ** q / (q * rho ** (q - 1)), rho / q, 2.0 - (1 - 1 / q) * rho]
    assert torch.allclose(smoothed_relu(z, q, rho), torch.tensor(expected, dtype=torch.float64))
    h = 1e-9
    for point in (0.0, rho):
        left, right = smoothed_relu(torch.tensor([point - h, point + h], dtype=torch.float64), q, rho)
        assert abs(float(left - right)) < 1e-8


@pytest.mark.parametrize(("q", "rho"), [(3, 0.5), (4, 0.3)], ids=["q3-rho0.5", "q4-rho0.3"])
def test_smoothed_relu_gradient(q: float, rho: float) -> None:
    z = torch.tensor([-0.7, -1e-3, 0.01, rho * 0.4, rho * 0.99, rho * 1.01, 1.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: smoothed_relu(t, q, rho), (z.requires_grad_(),))
    kinks = torch.tensor([0.0, rho], dtype=torch.float64, requires_grad=True)
    smoothed_relu(kinks, q, rho).sum().backward()
    assert torch.allclose(kinks.grad, torch.tensor([0.0, 1.0], dtype=torch.float64))
    near = torch.tensor([rho - 1e-6, rho + 1e-6], dtype=torch.float64, requires_grad=True)
    smoothed_relu(near, q, rho).sum().backward()
    assert torch.allclose(near.grad, torch.ones(2, dtype=torch.float64), atol=1e-4)


def test_smoothed_relu_second_derivative_and_the_relu_case() -> None:
    """The hand-written backward is itself differentiable (Hessian-vector products), and q = 1 is the ReLU."""
    z = torch.tensor([-0.7, 0.01, 0.2, 0.49, 0.51, 1.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: smoothed_relu(t, 3.0, 0.5), (z,))
    (grad,) = torch.autograd.grad(smoothed_relu(z, 3.0, 0.5).sum(), z, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), z)
    expected = torch.where((z > 0) & (z < 0.5), 2 * z / 0.25, torch.zeros_like(z))  # (q−1)·z^(q−2)/ρ^(q−1)
    assert torch.allclose(second, expected.detach())
    assert torch.equal(smoothed_relu(z.detach(), 1.0, 0.5), torch.relu(z.detach()))
