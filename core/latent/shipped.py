"""The Latent page's first maps of the shipped models, computed by ``python -m core build-defaults`` and kept in
``assets/latent/<run id>/<map id>.npz`` (the file name ATLAS_HOME would use, the weights' digest included), so
the page's default view of a fresh install needs no attack and no UMAP: ``latent_map`` finds them after ATLAS_HOME.

Every shipped model that the page can map (not the per-patch ℓ2 ones) gets the map it has as primary model, which
is also its map as the comparison of another shipped model of its dataset whenever the two share norm and ε (all
shipped digits models do: ℓ∞, 0.1)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from core.data import load_dataset
from core.evaluation.suite import run_meta
from core.latent.maps import PAGE_POINTS, SHIPPED_LATENT_DIR, latent_map, latent_path, page_spec
from core.store import Registry
from core.store.shipped import chosen_shipped, register_shipped


def export_shipped_latent_maps(only: list[str] | None = None, folder: Path | None = None,
                               on_start: Callable[[str], None] | None = None,
                               points: int = PAGE_POINTS) -> dict[str, str]:
    """Compute and write the page's default map of each shipped model (those whose checkpoint stem is in ``only``,
    or all), replacing a model's old maps; return {run id: file name}."""
    folder = folder or SHIPPED_LATENT_DIR
    written = {}
    with tempfile.TemporaryDirectory(prefix="atlas-latent-") as scratch:
        registry = Registry(scratch)
        register_shipped(registry, evaluations=False)
        for run in chosen_shipped(registry, only).values():
            if run["norm"] not in ("linf", "l2"):
                continue
            if on_start is not None:
                on_start(run["id"])
            test = load_dataset(run["dataset"], "test")
            spec = page_spec(run, run, tuple(test.input_shape), len(test), points=points)
            latent_map(spec, registry=registry, shipped=False)  # computed afresh in the scratch home
            source = latent_path(registry.home, spec, run_meta(registry, run["id"])["sha256"])
            target = folder / run["id"]
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            shutil.copyfile(source, target / source.name)
            written[run["id"]] = source.name
    return written
