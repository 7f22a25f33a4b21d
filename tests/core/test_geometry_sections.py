"""Cross-sections, ε-ball sections, attack paths and curvature, against analytic answers and the shipped models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from core.attacks import PGD
from core.data import load_dataset
from core.errors import ConfigError
from core.geometry.curvature import (
    boundary_curvature, boundary_distance, censored_ratios, cure_curvature, hessian_top_eigenvalue,
    random_vs_adversarial,
)
from core.geometry.local import SectionSpec, compare_on_plane
from core.geometry.planes import ball_section, make_plane, plane_from
from core.geometry.sections import attack_path, ball_loss, cross_section, loss_surface
from core.models import build_model, load_checkpoint
from core.utils import assets_models_dir


def linear_model(d: int = 12, seed: int = 0) -> torch.nn.Module:
    return build_model("mlp", seed=seed, in_features=d, num_classes=2, hidden=[]).eval()


def analytic(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor, float]:
    """Predicted class c, the unit normal of its boundary (pointing out of c's region) and x's distance to it."""
    with torch.no_grad():
        logits = model(x[None])[0]
    c = int(logits.argmax())
    w = (model.head.weight[1 - c] - model.head.weight[c]).detach()
    return c, w / w.norm(), float((logits[c] - logits[1 - c]) / w.norm())


@pytest.fixture(scope="module")
def digits_models() -> dict[str, torch.nn.Module]:
    return {name: load_checkpoint(assets_models_dir() / f"digits-smallcnn-{name}.safetensors")[0].eval()
            for name in ("erm", "pgd-at")}


def test_linear_section_is_a_straight_boundary_at_the_analytic_distance() -> None:
    model = linear_model()
    x = torch.rand(12, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    c, normal, distance = analytic(model, x)
    plane = make_plane(model, x, c, "deepfool")
    assert torch.allclose(plane.u, normal, atol=1e-5)
    assert abs(float(plane.u @ plane.v)) < 1e-6 and abs(float(plane.v.norm()) - 1) < 1e-6
    section = cross_section(model, plane, extent=3 * distance, resolution=129)
    # Every row b crosses the boundary at the same a = distance: the section's boundary is a vertical line.
    crossings = []
    for row in section.margin:
        i = int(np.nonzero(row <= 0)[0][0])
        crossings.append(section.a[i - 1] + (section.a[i] - section.a[i - 1]) * row[i - 1] / (row[i - 1] - row[i]))
    assert np.allclose(crossings, distance, atol=1e-4)
    assert section.distance_along_u() == pytest.approx(distance, abs=1e-4)
    assert section.evaluated < 0.2 * 129 ** 2  # the adaptive grid refines only along the boundary
    assert set(np.unique(section.pred)) == {0, 1}
    curvature = boundary_curvature(model, plane, t_max=5 * distance)
    assert abs(curvature.kappa) < 1e-4 and curvature.distance == pytest.approx(distance, rel=1e-4)


def test_the_loss_inside_the_eps_ball_is_its_exact_maximum_on_a_linear_model() -> None:
    """On a linear 2-class model the cross-entropy grows along the normal û: inside the ℓ2 ball's section its
    largest value is at a = ε, b = 0 exactly; inside the ℓ∞ section at the vertex farthest along û. The loss at x
    is the surface's centre value."""
    model = linear_model(d=12, seed=2)
    x = torch.rand(12, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.25
    c, normal, distance = analytic(model, x)
    plane = make_plane(model, x, c, "deepfool")

    def ce(a: float, b: float) -> float:
        with torch.no_grad():
            logits = model(plane.points(torch.tensor([a]), torch.tensor([b])))
        return float(torch.nn.functional.cross_entropy(logits, torch.tensor([c])))

    eps = 0.3 * distance
    found = ball_loss(model, plane, c, ball_section(plane, eps, "l2"))
    surface = loss_surface(model, plane, c, extent=2 * distance, resolution=41)
    assert found.at_x == pytest.approx(float(surface.loss[20, 20]), rel=1e-6) == pytest.approx(ce(0, 0), rel=1e-6)
    assert found.highest == pytest.approx(ce(eps, 0.0), rel=1e-5)
    assert found.rise > 0
    polygon = ball_section(plane, 0.05, "linf")
    a_far = polygon[np.argmax(polygon[:, 0])]
    assert ball_loss(model, plane, c, polygon).highest == pytest.approx(ce(*a_far), rel=1e-5)
    with pytest.raises(ConfigError, match="closed polygon"):
        ball_loss(model, plane, c, np.array([[0.0, 0.0], [np.nan, 1.0], [0.0, 0.0]]))


def test_distances_along_directions_match_the_analytic_ones_on_a_linear_model() -> None:
    model = linear_model(d=20, seed=3)
    x = torch.full((20,), 0.5)
    c, normal, distance = analytic(model, x)
    gen = torch.Generator().manual_seed(0)
    dirs = torch.randn(30, 20, generator=gen)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    found = boundary_distance(model, x.repeat(30, 1), dirs, torch.full((30,), c), t_max=50 * distance)
    cosines = dirs @ normal
    expected = torch.where(cosines > 0, distance / cosines, torch.full_like(cosines, math.inf))
    expected = torch.where(expected <= 50 * distance, expected, torch.full_like(expected, math.inf))
    assert torch.equal(torch.isinf(found), torch.isinf(expected))
    finite = torch.isfinite(found)
    assert torch.allclose(found[finite], expected[finite], rtol=1e-4)
    ratio = random_vs_adversarial(model, x[None], directions=64, reach=1e4)
    assert ratio.adversarial[0] == pytest.approx(1.02 * distance, rel=1e-3)  # DeepFool's overshoot is 0.02


def test_infinite_ratios_count_at_the_reach_and_unflipped_inputs_not_at_all() -> None:
    """The table's median once kept the ∞ ratios (20.75) and the box plot dropped them (≈ 9)."""
    ratios = censored_ratios(np.array([2.0, math.inf, np.nan, 8.0, math.inf]), reach=40.0)
    assert ratios.tolist() == [2.0, 40.0, 8.0, 40.0]
    assert float(np.median(ratios)) == 24.0


def same_vertices(polygon: np.ndarray, expected: list[tuple[float, float]]) -> bool:
    """The closed polygon's vertices equal ``expected`` as a set (float32 directions: to 1e-6)."""
    got = sorted(map(tuple, np.round(polygon[:-1], 6).tolist()))
    want = sorted(map(tuple, np.round(np.array(expected), 6).tolist()))
    return len(got) == len(want) and np.allclose(got, want, atol=1e-6)


def test_linf_ball_section_is_exact_on_known_planes() -> None:
    d, eps = 6, 0.2
    e = torch.eye(d)
    origin = torch.zeros(d)
    square = ball_section(plane_from(origin, e[0], e[1], shape=(d,)), eps, "linf")
    assert same_vertices(square, [(eps, eps), (-eps, eps), (-eps, -eps), (eps, -eps)])
    diamond = ball_section(plane_from(origin, e[0] + e[1], e[0] - e[1], shape=(d,)), eps, "linf")
    r = eps * math.sqrt(2)
    assert same_vertices(diamond, [(r, 0.0), (0.0, r), (-r, 0.0), (0.0, -r)])
    disc = ball_section(plane_from(origin, e[0], e[2], shape=(d,)), eps, "l2")
    assert np.allclose(np.hypot(disc[:, 0], disc[:, 1]), eps) and np.allclose(disc[0], disc[-1])
    # On a random plane every vertex lies on the cube's surface, and the polygon is convex and closed.
    gen = torch.Generator().manual_seed(4)
    plane = plane_from(origin, torch.randn(d, generator=gen), torch.randn(d, generator=gen), shape=(d,))
    poly = ball_section(plane, eps, "linf")
    points = poly[:-1, :1] * plane.u.double().numpy() + poly[:-1, 1:] * plane.v.double().numpy()
    assert np.allclose(np.abs(points).max(axis=1), eps)
    edges = np.diff(poly, axis=0)
    turns = edges[:-1, 0] * edges[1:, 1] - edges[:-1, 1] * edges[1:, 0]
    assert (turns > 0).all()


def test_adaptive_grid_agrees_with_the_uniform_grid_on_a_digits_cnn(digits_models) -> None:
    data = load_dataset("digits")
    model = digits_models["erm"]
    plane = make_plane(model, data.x[2], int(data.y[2]), "deepfool")
    adaptive = cross_section(model, plane, extent=2.0, resolution=65)
    full = cross_section(model, plane, extent=2.0, resolution=65, uniform=True)
    assert (adaptive.pred == full.pred).mean() > 0.999
    assert adaptive.evaluated < 0.6 * full.evaluated
    near = np.abs(full.margin) < 0.5  # near the boundary the margin is evaluated, not interpolated
    assert np.allclose(adaptive.margin[near], full.margin[near], atol=1e-4)


def test_attack_path_follows_the_attack(digits_models) -> None:
    data = load_dataset("digits")
    model = digits_models["erm"]
    x, y = data.x[5], int(data.y[5])
    plane = make_plane(model, x, y, "gradient")
    path = attack_path(model, plane, y, attack="pgd", eps=0.1, norm="linf", steps=6)
    final = PGD(norm="linf", steps=6, step_size=2.5 * 0.1 / 6, random_start=False)(model, x[None],
                                                                                      torch.tensor([y]), eps=0.1)
    ab, off = plane.coordinates(final.x_adv)
    assert len(path.ab) == 7 and np.allclose(path.ab[0], 0) and path.off_plane[0] == 0
    assert np.allclose(path.ab[-1], ab[0], atol=1e-5) and path.off_plane[-1] == pytest.approx(off[0], abs=1e-5)
    df = attack_path(model, plane, y, attack="deepfool", eps=0.1, norm="l2", steps=50)
    assert df.preds[-1] != df.preds[0] and len(df.preds) < 51


def test_adversarial_training_lowers_curvature_on_the_shipped_digits_models(digits_models) -> None:
    data = load_dataset("digits")
    x, y = data.x[:40], data.y[:40]
    hessian = {k: float(hessian_top_eigenvalue(m, x, y).median()) for k, m in digits_models.items()}
    cure = {k: float(cure_curvature(m, x, y).median()) for k, m in digits_models.items()}
    assert hessian["pgd-at"] < 0.5 * hessian["erm"]
    assert cure["pgd-at"] < 0.5 * cure["erm"]


def test_power_iteration_finds_the_top_eigenvalue_of_a_known_hessian() -> None:
    # Binary linear model: ∇²ₓ CE = p(1 − p)·w wᵀ with w = w₁ − w₀, whose only non-zero eigenvalue is p(1−p)‖w‖².
    model = linear_model(d=8, seed=5)
    x = torch.rand(3, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 0])
    with torch.no_grad():
        p = model(x).softmax(1)[:, 1]
    w = model.head.weight[1] - model.head.weight[0]
    expected = p * (1 - p) * w.norm() ** 2
    assert torch.allclose(hessian_top_eigenvalue(model, x, y, iters=30), expected.detach(), rtol=1e-4)


def test_curvature_of_a_confident_input_is_measured_not_float32_noise(digits_models) -> None:
    """On digits test #9 the shipped PGD-AT model is sure of its answer (p ≈ 1 − 1e-7), so the loss's gradient is
    at float32's resolution: with the softmax in float32 the Geometry page showed λmax 7.8e-08 (the true value is
    1.7e-07) and CURE 2.4e-08 (the true value is 2.2e-07). References: the full 64 × 64 input-Hessian's eigenvalues
    and CURE's formula, with the whole model in float64."""
    data = load_dataset("digits")
    x, y = data.x[9:10], data.y[9:10]
    model = digits_models["pgd-at"]
    m64 = copy.deepcopy(model).double()

    def loss(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m64(z.reshape(x.shape)), y, reduction="sum")

    eigen = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, x.double().flatten()))
    top = float(eigen[eigen.abs().argmax()])
    assert 1e-8 < top < 1e-6, "an input the model is sure of (else this test checks nothing)"
    assert float(hessian_top_eigenvalue(model, x, y, iters=30)[0]) == pytest.approx(top, rel=1e-4)
    def grad(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(loss(z), z)[0]

    g0 = grad(x.double().flatten())
    z = g0.sign() / g0.sign().norm()
    cure = float((grad(x.double().flatten() + 0.1 * z) - g0).norm() / 0.1)
    assert float(cure_curvature(model, x, y)[0]) == pytest.approx(cure, rel=1e-6)
    assert next(model.parameters()).dtype == torch.float32, "the model itself is left in float32"


def test_degenerate_planes_fall_back_with_a_note() -> None:
    model = linear_model(d=10)
    with torch.no_grad():
        model.head.weight.zero_()  # a constant classifier: zero gradient, no boundary anywhere
    x = torch.full((10,), 0.3)
    plane = make_plane(model, x, 0, "deepfool")
    assert plane.kind == "random" and len(plane.notes) == 2
    assert "zero" in plane.notes[1] and abs(float(plane.u @ plane.v)) < 1e-6
    same = make_plane(linear_model(d=10), x, 0, "image", other=x.clone())
    assert same.kind == "random" and "equals" in same.notes[0]
    with pytest.raises(ConfigError, match="parallel"):
        plane_from(x, torch.ones(10), 2 * torch.ones(10), shape=(10,))
    with pytest.raises(ConfigError, match="NaN"):
        make_plane(model, torch.full((10,), math.nan), 0, "random")


def test_spec_caps_sizes_with_notes_and_refuses_bad_budgets() -> None:
    spec, notes = SectionSpec.checked(resolution=1000, path_steps=900, zoom=99.0)
    assert spec.resolution == 513 and spec.path_steps == 50 and spec.zoom == 20.0 and len(notes) == 3
    spec, notes = SectionSpec.checked(resolution=100)
    assert spec.resolution == 65 and "65" in notes[0]
    spec, notes = SectionSpec.checked(eps=1e9, norm="linf")
    assert spec.eps == 1.0 and notes == ["ε = 1e+09 capped at 1, the largest ℓ∞ budget"]  # a readable norm name
    for eps in (0.0, -0.1, math.nan):
        with pytest.raises(ConfigError, match="eps"):
            SectionSpec(eps=eps)
    with pytest.raises(ConfigError, match="ε"):
        ball_section(make_plane(linear_model(), torch.rand(12), 0, "random"), math.nan, "linf")


def test_both_models_share_one_plane_and_the_robust_one_is_farther(digits_models) -> None:
    data = load_dataset("digits")
    spec, _ = SectionSpec.checked(plane="deepfool", eps=0.1, norm="linf", resolution=65, surface_resolution=9)
    view = compare_on_plane({"at": digits_models["pgd-at"], "erm": digits_models["erm"]}, data.x[0],
                            int(data.y[0]), spec)
    assert view.results["at"].section.a is not view.results["erm"].section.a
    assert np.array_equal(view.results["at"].section.a, view.results["erm"].section.a)
    assert view.extent >= 1.6 * max(r.deepfool_distance for r in view.results.values()) - 1e-9
    assert view.results["at"].deepfool_distance > view.results["erm"].deepfool_distance
    assert view.results["at"].surface.loss.shape == (9, 9)


def test_a_comparison_does_not_carry_its_dataset_and_kappa_ignores_the_zoom(digits_models) -> None:
    import pickle

    data = load_dataset("digits")
    big = torch.cat([data.x] * 8)  # x as a view into a large tensor, as the page's examples are
    views = {}
    for zoom in (1.0, 3.0):
        spec, _ = SectionSpec.checked(plane="deepfool", resolution=33, zoom=zoom, surface_resolution=5, path="none")
        views[zoom] = compare_on_plane({"erm": digits_models["erm"]}, big[7], int(data.y[7]), spec)
    assert len(pickle.dumps(views[1.0])) < 0.05 * big.numel() * 4
    k1, k3 = views[1.0].results["erm"].boundary.kappa, views[3.0].results["erm"].boundary.kappa
    assert math.isfinite(k1) and k1 == pytest.approx(k3, rel=1e-4)  # only the bisection grid differs


def test_no_ratio_where_deepfool_finds_no_boundary() -> None:
    model = linear_model(d=10)
    with torch.no_grad():
        model.head.weight.zero_()
    ratio = random_vs_adversarial(model, torch.full((2, 10), 0.3), directions=4)
    assert np.isinf(ratio.adversarial).all() and np.isnan(ratio.ratio).all()
