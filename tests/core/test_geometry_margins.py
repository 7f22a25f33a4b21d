"""Geometry engine: DeepFool margins and DCT-subspace margins — exact answers on linear models, the DCT basis, real
facts on the shipped digits models, refusals, persistence and the "geometry" job kind."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.fft import dctn
from torch import nn

from core.attacks.deepfool import SubspaceProjector, deepfool_run
from core.data import Dataset, load_dataset
from core.errors import ConfigError, DataError
from core.geometry.analysis import AnalysisCancelled, quantiles, result_path, spec_from_dict
from core.geometry.dct import (DCTMarginSpec, block_masks, compute_dct_margins, dct_basis, dct_margins,
                               diagonal_blocks, subspace_basis)
from core.geometry.margins import MarginSpec, compute_margins, deepfool_margins
from core.jobs import get_job, submit_job
from core.models import load_checkpoint
from core.store import Registry
from core.store.shipped import register_shipped
from tests.core.test_models import _single_thread  # noqa: F401 (autouse fixture)

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
ERM = "shipped-digits-smallcnn-erm"


@pytest.fixture(scope="module")
def shipped() -> dict[str, nn.Module]:
    return {name: load_checkpoint(MODELS / f"digits-smallcnn-{name}.safetensors")[0].eval()
            for name in ("erm", "pgd-at")}


@pytest.fixture
def registry(atlas_home: Path) -> Registry:
    reg = Registry()
    register_shipped(reg)
    return reg


def linear_images(weight_diff: torch.Tensor, n: int = 24, seed: int = 0) -> tuple[nn.Module, Dataset]:
    """A binary linear model on 1×8×8 inputs whose logit difference is w·x + b, and unbounded image data."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(64), weight_diff]))
        model[1].bias.copy_(torch.tensor([0.0, -float(weight_diff.sum()) * 0.5]))
    x = 0.3 + 0.4 * torch.rand(n, 1, 8, 8, generator=gen)
    y = model(x).argmax(1)
    return model, Dataset(name="digits", split="test", x=x, y=y, classes=("a", "b"), bounds=None)


def logit_gap(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    return (logits[:, 1] - logits[:, 0]).abs()


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 6)], ids=["gray-8x8", "rgb-4x6"])
def test_dct_basis_is_orthonormal_and_is_scipys_ortho_dct(shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    basis = dct_basis(h, w, c, dtype=torch.float64)
    assert torch.allclose(basis @ basis.T, torch.eye(c * h * w, dtype=torch.float64), atol=1e-12)
    x = torch.rand(shape, dtype=torch.float64)
    expected = dctn(x.numpy(), axes=(-2, -1), norm="ortho").reshape(-1)
    assert np.allclose((basis @ x.reshape(-1)).numpy(), expected, atol=1e-12)


def test_diagonal_blocks_slide_from_low_to_high_frequency() -> None:
    assert len(diagonal_blocks(28, 8, 1)) == 21
    assert diagonal_blocks(8, 4, 1) == [0, 1, 2, 3, 4]
    assert diagonal_blocks(8, 3, 2) == [0, 2, 4, 5], "the last block always reaches the highest frequency"
    masks = block_masks((3, 8, 8), block=4, step=1)
    assert masks.shape == (5, 192) and (masks.sum(1) == 3 * 16).all()
    freq = torch.arange(8)
    radius = (freq.view(8, 1) + freq.view(1, 8)).flatten().repeat(3).float()
    mean_freq = [(radius[m]).mean().item() for m in masks]
    assert mean_freq == sorted(mean_freq) and mean_freq[0] < mean_freq[-1]
    assert masks[0, 0] and masks[-1, 63] and masks[-1, 127], "DC first, the highest frequency of every channel last"
    basis = subspace_basis((1, 8, 8), 4, 1, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(16), atol=1e-5)


def test_subspace_deepfool_perturbation_lies_in_the_subspace(shipped: dict[str, nn.Module]) -> None:
    x = load_dataset("digits").x[:12]
    basis = subspace_basis((1, 8, 8), 4, 1, 1)
    run = deepfool_run(shipped["erm"], x, steps=100, bounds=None, projector=SubspaceProjector(basis))
    assert run.converged.float().mean() > 0.8
    r = run.r.flatten(1)
    outside = r - (r @ basis) @ basis.T
    assert (outside.norm(dim=1) <= 1e-4 * r.norm(dim=1)).all()
    assert (run.pred_adv[run.converged] != run.pred[run.converged]).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_linear_margins_equal_the_analytic_distance(norm: str) -> None:
    w = torch.randn(64, generator=torch.Generator().manual_seed(3))
    model, data = linear_images(w)
    result = compute_margins(model, data, MarginSpec(run_id="x", dataset="digits", norms=(norm,), overshoot=0.005))
    analytic = (logit_gap(model, data.x) / (w.norm() if norm == "l2" else w.abs().sum())).double().numpy()
    assert result.converged_l2.all() if norm == "l2" else result.converged_linf.all()
    assert np.allclose(getattr(result, f"margin_{norm}"), analytic * 1.005, rtol=0.01, atol=1e-5)
    flat = data.x.flatten(1)
    x_norm = flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)
    assert math.isclose(result.rho_adv(norm), float(np.mean(analytic * 1.005 / x_norm.numpy())), rel_tol=0.01)


def test_dct_margins_of_a_linear_model_are_its_projected_distances_and_inf_when_invariant() -> None:
    w = torch.randn(64, generator=torch.Generator().manual_seed(4))
    model, data = linear_images(w, n=16)
    spec = DCTMarginSpec(run_id="x", dataset="digits", n=16, overshoot=0.0)
    result = compute_dct_margins(model, data, spec)
    masks = block_masks((1, 8, 8), 4, 1)
    basis = dct_basis(8, 8, dtype=torch.float64)
    projected = torch.stack([((basis @ w.double()) * m).norm() for m in masks])
    analytic = logit_gap(model, data.x).double().unsqueeze(1) / projected.unsqueeze(0)
    assert result.converged.all()
    assert np.allclose(result.margin, analytic.numpy(), rtol=1e-3, atol=2e-4)
    assert np.allclose(result.full_margin, (logit_gap(model, data.x) / w.norm()).numpy(), rtol=1e-3, atol=2e-4)
    # A boundary that only low frequencies cross: the highest block (disjoint from the lowest) is invariant.
    low = (basis.T @ (basis @ w.double() * masks[0])).float()
    model, data = linear_images(low, n=16)
    result = compute_dct_margins(model, data, spec)
    assert np.isfinite(result.margin[:, 0]).all() and np.isinf(result.margin[:, -1]).all()
    assert result.invariant[-1] == 16 and result.invariant[0] == 0 and math.isinf(result.medians[-1])


def test_adversarial_training_raises_deepfool_and_low_frequency_margins(shipped: dict[str, nn.Module]) -> None:
    data = load_dataset("digits").subset(150)
    margins, dct = {}, {}
    for name, model in shipped.items():
        margins[name] = compute_margins(model, data, MarginSpec(run_id="x", dataset="digits", norms=("l2",)))
        dct[name] = compute_dct_margins(model, data.subset(30), DCTMarginSpec(run_id="x", dataset="digits", n=30))
    erm, robust = margins["erm"], margins["pgd-at"]
    assert robust.info["median_l2"] > 1.3 * erm.info["median_l2"], (erm.info, robust.info)
    assert robust.rho_adv("l2") > erm.rho_adv("l2")
    table = erm.summary("l2")
    assert list(table.index) == [str(c) for c in range(10)] + ["all"]
    assert table.loc["all", "n"] == erm.correct.sum() == table["n"].iloc[:10].sum()
    assert np.isnan(erm.margin_linf).all(), "norms not asked for stay empty"
    with pytest.raises(ConfigError, match="not 'linf'"):
        erm.summary("linf")
    # Standard training: margins grow from low to high frequency; adversarial training lifts the low ones.
    assert dct["erm"].medians[-1] > 2 * dct["erm"].medians[0]
    assert dct["pgd-at"].medians[0] > 1.5 * dct["erm"].medians[0]
    assert (dct["erm"].q25 <= dct["erm"].medians).all() and (dct["erm"].medians <= dct["erm"].q75).all()


def test_quantiles_treat_non_converged_points_as_infinite() -> None:
    assert quantiles(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == (2.0, 3.0, 4.0)
    assert quantiles(np.array([1.0, 2.0, 3.0, np.inf, np.inf])) == (2.0, 3.0, math.inf)
    assert quantiles(np.array([1.0, np.inf])) == (math.inf, math.inf, math.inf)
    q25, median, q75 = quantiles(np.array([1.0, 2.0, np.inf, np.inf]))
    assert q25 == 1.75 and math.isinf(median) and math.isinf(q75)
    assert all(math.isnan(q) for q in quantiles(np.array([])))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(dataset="moons"), ConfigError, "image inputs"),
    (dict(block=9), ConfigError, "does not fit 8×8"),
    (dict(step=0), ConfigError, "step must be an integer"),
    (dict(n=0), ConfigError, "sample size"),
    (dict(dataset="nope"), DataError, "unknown dataset"),
    (dict(overshoot=float("nan")), ConfigError, "overshoot must be a finite number"),
], ids=["not-image", "block-too-big", "step-zero", "n-zero", "unknown-data", "nan-overshoot"])
def test_bad_dct_specs_are_refused(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        DCTMarginSpec(**{"run_id": ERM, "dataset": "digits", **kwargs})


@pytest.mark.parametrize("config,match", [
    ({"kind": "margins", "norms": ["l1"]}, "subset of l2, linf"),
    ({"kind": "margins", "steps": 0}, "steps must be"),
    ({"kind": "curvature"}, "unknown geometry analysis"),
    ({"kind": "dct", "blocks": 4}, "unknown dct settings: blocks"),
], ids=["bad-norm", "zero-steps", "unknown-kind", "unknown-field"])
def test_bad_spec_dicts_are_refused(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spec_from_dict({"run_id": ERM, "dataset": "digits", **config})


def test_results_persist_per_weights_and_spec_and_cancel_persists_nothing(registry: Registry) -> None:
    spec = DCTMarginSpec(run_id=ERM, dataset="digits", n=8, steps=30)
    with pytest.raises(AnalysisCancelled):
        dct_margins(spec, registry=registry, should_stop=lambda: True)
    assert not (registry.home / "geometry").exists()
    events: list[float] = []
    first = dct_margins(spec, registry=registry, on_progress=lambda f, text: events.append(f))
    assert events and events == sorted(events) and 0 < events[-1] <= 1
    path = result_path(registry.home, spec, registry_sha(registry))
    assert path.is_file() and path.parent == registry.home / "geometry" / ERM
    second = dct_margins(spec, registry=registry)
    assert second.info["cached"] and "cached" not in first.info
    for name in ("margin", "converged", "medians", "starts", "full_margin"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert second.info["spec"] == spec.to_dict()
    capped = deepfool_margins(MarginSpec(run_id=ERM, dataset="digits", n=5000, norms=("l2",), steps=3),
                              registry=registry)
    assert len(capped.y) == 450 and "has 450" in capped.info["notes"][-1]
    again = spec_from_dict(capped.info["spec"])
    assert deepfool_margins(again, registry=registry).info["cached"]


def registry_sha(registry: Registry) -> str:
    from core.evaluation.suite import run_meta

    return run_meta(registry, ERM)["sha256"]


def test_a_geometry_job_runs_in_its_own_process_and_persists(registry: Registry, subprocess_env: dict,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    spec = DCTMarginSpec(run_id=ERM, dataset="digits", n=10, steps=40)
    job_id = submit_job(registry, "geometry", {"spec": spec.to_dict(), "device": "cpu"})
    deadline = time.monotonic() + 120
    while get_job(registry, job_id)["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    job = get_job(registry, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["run_id"] == ERM and job["progress"] == 1.0
    assert dct_margins(spec, registry=registry).info["cached"], "the page reads the result the job wrote"
