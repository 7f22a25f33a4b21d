"""Latent space engine: hooks on every architecture, projections, measures, the persisted map and its refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from core.errors import ConfigError
from core.latent import LatentSpec, compute_map, extract_features, latent_map, latent_path, layer_names
from core.latent.metrics import centroid_drift, knn_accuracy, silhouette
from core.latent.projection import PCAProjector, UMAPProjector, fit_projector, tsne_joint
from core.models import build_model
from core.store import Registry
from core.store.shipped import register_shipped
from tests.core.test_models import ARCH_CASES, _build, _input, _single_thread  # noqa: F401 (autouse fixture)

ERM = "shipped-digits-smallcnn-erm"
PGD_AT = "shipped-digits-smallcnn-pgd-at"


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", list(ARCH_CASES), ids=list(ARCH_CASES))
def test_every_layer_of_every_arch_gives_flat_features_and_leaves_the_model_alone(arch: str) -> None:
    model = _build(arch).train()
    x = _input(arch, batch=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = layer_names(model)
    assert names, f"{arch} offers no layer"
    for layer in names:
        feats = extract_features(model, x, layer, batch_size=2)  # 3 batches: the pieces must join in order
        assert feats.dim() == 2 and feats.shape[0] == 5 and feats.dtype == torch.float32, layer
        assert torch.isfinite(feats).all(), layer
    assert model.training, "the model's mode must be restored"
    assert _hook_count(model) == 0, "hooks must be removed"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch", [a for a in ARCH_CASES if a != "patchnet"])
def test_penultimate_is_what_the_head_reads(arch: str) -> None:
    model = _build(arch).eval()
    x = _input(arch, batch=4)
    feats = extract_features(model, x, "penultimate")
    with torch.no_grad():
        expected = model.features(x).flatten(1)
    assert torch.allclose(feats, expected, atol=1e-5)


def test_layer_features_have_the_layer_output_shape() -> None:
    model = build_model("smallcnn", seed=0).eval()
    x = torch.rand(6, 1, 8, 8)
    assert extract_features(model, x, "body.4").shape == (6, 64 * 4 * 4)
    assert extract_features(model, x, "penultimate").shape == (6, 128)


def test_unknown_layer_is_refused_with_the_choices() -> None:
    model = build_model("smallcnn", seed=0)
    with pytest.raises(ConfigError, match="no layer 'conv9'.*penultimate"):
        extract_features(model, torch.rand(2, 1, 8, 8), "conv9")
    with pytest.raises(ConfigError, match="no linear head"):
        extract_features(build_model("patchnet", seed=0, d=16), torch.rand(2, 8, 16), "penultimate")


def _blobs(n_per: int = 40, classes: int = 4, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 6
    y = np.repeat(np.arange(classes), n_per)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_umap_is_deterministic_and_transform_lands_near_the_fit() -> None:
    clean, _ = _blobs()
    first = UMAPProjector(clean, seed=3)
    second = UMAPProjector(clean, seed=3)
    assert np.array_equal(first.embedding, second.embedding)
    placed = first.transform(clean)
    assert np.array_equal(placed, second.transform(clean))
    spread = np.linalg.norm(first.embedding - first.embedding.mean(0), axis=1).mean()
    assert np.median(np.linalg.norm(placed - first.embedding, axis=1)) < 0.15 * spread


def test_pca_projects_clean_points_onto_their_own_fit() -> None:
    clean, _ = _blobs()
    projector, xy, note = fit_projector("pca", clean)
    assert note == "" and np.allclose(projector.transform(clean), xy)
    # The first axis carries the most variance.
    assert xy[:, 0].var() >= xy[:, 1].var()


def test_umap_with_too_few_points_falls_back_to_pca_and_says_so() -> None:
    clean, _ = _blobs(n_per=3)
    projector, xy, note = fit_projector("umap", clean)
    assert isinstance(projector, PCAProjector) and xy.shape == (12, 2) and "PCA" in note


def test_tsne_embeds_clean_and_adversarial_together() -> None:
    clean, _ = _blobs(n_per=15)
    clean_xy, adv_xy = tsne_joint(clean, [clean + 0.1, clean + 0.2], seed=0)
    assert clean_xy.shape == (60, 2) and adv_xy.shape == (2, 60, 2)
    with pytest.raises(ConfigError, match="limit"):
        tsne_joint(clean, [clean] * 200)


def test_measures_on_known_clusters() -> None:
    clean, y = _blobs()
    assert knn_accuracy(clean, y) == 1.0
    assert math.isclose(silhouette(clean, y), silhouette_score(clean, y), rel_tol=1e-6)
    # Move every class-0 point onto class 1's centroid: the drift matrix records 0 → 1 for all of them.
    adv = clean.copy()
    centre1 = clean[y == 1].mean(0)
    adv[y == 0] = centre1
    drift = centroid_drift(clean, adv, y, 4)
    assert drift["drift"][0, 1] == 40 and drift["drift"][0].sum() == 40
    assert np.array_equal(np.diag(drift["drift"])[1:], [40, 40, 40])
    assert drift["nearest_true"] == 0.75
    assert knn_accuracy(clean, y, adv) == 0.75


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("atlas"))
    register_shipped(reg)
    return reg


def test_map_is_computed_once_then_read_from_the_store(registry: Registry) -> None:
    spec = LatentSpec(run_id=ERM, dataset="digits", n=60, eps_grid=(0.05, 0.1, 0.3), projection="pca")
    first = latent_map(spec, registry=registry)
    assert first.adv_xy.shape == (3, 60, 2) and first.pred_adv.shape == (3, 60)
    assert "cached" not in first.info
    path = next((registry.home / "latent" / ERM).glob("*.npz"))
    second = latent_map(spec, registry=registry)
    assert second.info["cached"] and np.array_equal(second.adv_xy, first.adv_xy)
    assert second.scores.keys() == first.scores.keys()
    assert path == latent_path(registry.home, spec, _sha(registry, ERM))
    # Robust accuracy at each ε follows from the stored predictions, and falls as ε grows.
    robust = (first.pred_adv == first.y).mean(axis=1)
    assert robust[0] >= robust[1] >= robust[2] and robust[2] < 0.2


def test_another_projection_of_the_same_points_reuses_the_attack(registry: Registry,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching UMAP → PCA (or the layer) re-projects; the attacked points are those of the last map."""
    from dataclasses import replace

    import core.latent.maps as maps
    from core.evaluation.suite import load_run_model

    calls = []
    real = maps._attack_grid
    monkeypatch.setattr(maps, "_attack_grid", lambda *a: calls.append(1) or real(*a))
    spec = LatentSpec(run_id=ERM, dataset="digits", n=40, eps_grid=(0.07, 0.2), projection="pca", seed=3)
    pca = latent_map(spec, registry=registry)
    first_layer = layer_names(load_run_model(registry, ERM)[0])[-1]
    other = latent_map(replace(spec, layer=first_layer, projection="tsne"), registry=registry)
    assert len(calls) == 1, "one attack for both maps"
    assert np.array_equal(pca.pred_adv, other.pred_adv)
    latent_map(replace(spec, steps=5), registry=registry)
    assert len(calls) == 2, "another attack is attacked anew"


def _sha(registry: Registry, run_id: str) -> str:
    from core.evaluation.suite import weights_digest

    return weights_digest(registry, run_id)


def test_robust_model_keeps_its_clusters_better(registry: Registry) -> None:
    eps = (0.1,)
    standard = latent_map(LatentSpec(run_id=ERM, dataset="digits", n=200, eps_grid=eps, projection="pca"),
                          registry=registry)
    robust = latent_map(LatentSpec(run_id=PGD_AT, dataset="digits", n=200, eps_grid=eps, projection="pca"),
                        registry=registry)
    assert robust.scores["knn_adv"][0] > standard.scores["knn_adv"][0] + 0.2
    assert robust.scores["nearest_true"][0] > standard.scores["nearest_true"][0]


@pytest.mark.parametrize("fields,match", [
    ({"eps_grid": (float("nan"),)}, "finite"),
    ({"eps_grid": (-0.1,)}, "increasing"),
    ({"eps_grid": (0.2, 0.1)}, "increasing"),
    ({"eps_grid": (2.0,)}, "increasing"),
    ({"eps_grid": ()}, "non-empty"),
    ({"n": 1}, "sample size"),
    ({"projection": "isomap"}, "projection"),
    ({"attack": "cw"}, "attack"),
    ({"split": "val"}, "split"),
])
def test_bad_specs_are_refused(fields: dict, match: str) -> None:
    base = {"run_id": ERM, "dataset": "digits", "eps_grid": (0.1,)}
    with pytest.raises(ConfigError, match=match):
        LatentSpec(**{**base, **fields})


def test_too_many_points_and_unknown_layers_are_refused(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="has 450 points"):
        latent_map(LatentSpec(run_id=ERM, dataset="digits", n=5000, eps_grid=(0.1,)), registry=registry)
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        latent_map(LatentSpec(run_id=ERM, dataset="digits", n=20, eps_grid=(0.1,), layer="nope"),
                   registry=registry)


def test_umap_map_end_to_end_on_a_shipped_model() -> None:
    from core.data import load_dataset
    from core.models import load_checkpoint

    model, _ = load_checkpoint(Path("assets/models/digits-smallcnn-pgd-at"))
    data = load_dataset("digits", "test").subset(80)
    latent = compute_map(model, data, LatentSpec(run_id=PGD_AT, dataset="digits", n=80, eps_grid=(0.1, 0.3),
                                                 projection="umap"))
    assert latent.info["method"] == "umap" and latent.info["note"] == ""
    assert latent.clean_xy.shape == (80, 2) and np.isfinite(latent.adv_xy).all()


def test_new_weights_invalidate_a_stored_map_and_deletion_removes_it(registry: Registry, tmp_path: Path) -> None:
    from core.models import load_checkpoint, save_checkpoint
    from core.store.imports import delete_run_files, import_checkpoint

    model, meta = load_checkpoint(Path(registry.get_run(ERM)["checkpoint_path"]))
    save_checkpoint(model, meta, tmp_path / "mine.safetensors")
    run = import_checkpoint(registry, (tmp_path / "mine.safetensors").read_bytes(),
                            (tmp_path / "mine.json").read_bytes())
    spec = LatentSpec(run_id=run["id"], dataset="digits", n=30, eps_grid=(0.1,), projection="pca")
    first = latent_map(spec, registry=registry)
    assert latent_map(spec, registry=registry).info.get("cached")
    with torch.no_grad():
        model.head.weight.mul_(-1.0)
    save_checkpoint(model, meta, run["checkpoint_path"])
    again = latent_map(spec, registry=registry)
    assert not again.info.get("cached"), "changed weights are mapped afresh"
    assert not np.array_equal(again.pred_clean, first.pred_clean)
    delete_run_files(registry, run["id"])
    assert not (registry.home / "latent" / run["id"]).exists()


def _shipped_runs(registry: Registry) -> list[dict]:
    register_shipped(registry)
    return [r for r in registry.list_runs() if r["id"].startswith("shipped-") and r["norm"] in ("linf", "l2")]


def test_every_shipped_model_has_its_first_latent_map_shipped() -> None:
    """The Latent page's first view of a fresh install reads these (no attack, no UMAP): a map for each shipped
    model at the page's defaults, named as ATLAS_HOME would name it. New defaults or retrained models without
    `python -m core build-defaults` fail here, not silently on the page."""
    from core.data import load_dataset
    from core.evaluation.suite import run_meta
    from core.latent.maps import SHIPPED_LATENT_DIR, page_spec

    registry = Registry()
    runs = _shipped_runs(registry)
    assert {r["dataset"] for r in runs} == {"digits", "moons"}
    for run in runs:
        test = load_dataset(run["dataset"], "test")
        spec = page_spec(run, run, tuple(test.input_shape), len(test))
        name = latent_path(registry.home, spec, run_meta(registry, run["id"])["sha256"]).name
        assert (SHIPPED_LATENT_DIR / run["id"] / name).is_file(), \
            f"{run['id']}: run `python -m core build-defaults --evaluations-only` and commit assets/latent"
        # As the comparison of any other shipped model of its dataset the page asks for the same map.
        for primary in (r for r in runs if r["dataset"] == run["dataset"]):
            assert page_spec(run, primary, tuple(test.input_shape), len(test)) == spec


def test_a_shipped_map_is_read_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.latent.maps as maps

    registry = Registry()
    (run,) = [r for r in _shipped_runs(registry) if r["id"] == "shipped-digits-smallcnn-pgd-at"]
    spec = maps.page_spec(run, run, (1, 8, 8), 450)

    def no_compute(*args, **kwargs):
        raise AssertionError("the shipped map should have been read")

    monkeypatch.setattr(maps, "compute_map", no_compute)
    latent = latent_map(spec, registry=registry)
    assert latent.info["cached"] and latent.adv_xy.shape == (len(spec.eps_grid), 450, 2)
    assert latent.clean_xy.shape == (450, 2)


def test_build_defaults_writes_the_map_the_page_then_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.latent.maps as maps
    from core.latent.shipped import export_shipped_latent_maps

    with pytest.raises(ConfigError, match="nosuch: no such shipped model"):
        export_shipped_latent_maps(only=["nosuch"], folder=tmp_path)
    assert export_shipped_latent_maps(only=["patches-patchnet-at"], folder=tmp_path) == {}, "no image features"
    written = export_shipped_latent_maps(only=["moons-mlp-erm"], folder=tmp_path, points=60)
    assert list(written) == ["shipped-moons-mlp-erm"]
    monkeypatch.setattr(maps, "SHIPPED_LATENT_DIR", tmp_path)
    computed = []
    real = maps.compute_map
    monkeypatch.setattr(maps, "compute_map", lambda *a, **k: computed.append(1) or real(*a, **k))
    registry = Registry()
    (run,) = [r for r in _shipped_runs(registry) if r["id"] == "shipped-moons-mlp-erm"]
    latent = latent_map(maps.page_spec(run, run, (2,), 10_000, points=60), registry=registry)
    assert computed == [] and latent.info["cached"] and latent.clean_xy.shape == (60, 2)
    assert (tmp_path / run["id"] / written[run["id"]]).is_file()
