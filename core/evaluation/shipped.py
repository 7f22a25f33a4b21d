"""Evaluations shipped with the default models, so the Robustness page opens on the embedded default at once.

For every shipped model of a dataset the page can show (not the per-patch ℓ2 models), ``export_shipped_evaluations``
computes what the Robustness page computes when that model is the primary one at its defaults (its own norm and ε,
``PAGE_POINTS`` test points; core.evaluation.bundle.page_view): the standard bundle — minimal-norm curve, PGD-10
checks, PGD-10/100, Temperature-PGD and the quick ensemble at ε — and the trust checks. Each registry row is written
as ``assets/evaluations/<run id>/<eval id>.json`` (+ ``.parquet`` for a per-sample table), computed in a scratch
registry so nothing of the user's is copied. ``core.store.shipped.register_shipped_evaluations`` adds them to a
registry when they were computed on the weights the shipped model has now; after a retrain they are ignored until
``python -m core build-defaults`` (or ``--evaluations-only``) writes them again.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from core.data import DATASETS
from core.evaluation.bundle import PAGE_POINTS, page_view, standard_bundle
from core.evaluation.suite import evaluate, trust_checks_for, trust_config
from core.store import Registry
from core.store.shipped import EVALUATIONS_DIR, SHIPPED_PREFIX, chosen_shipped, register_shipped
from core.utils import atomic_write_bytes, atomic_write_json


def page_specs(run: dict) -> tuple[list, tuple[str, str, float, str]]:
    """The EvalSpecs and the trust-check arguments the Robustness page asks for with ``run`` as primary model."""
    norm = run["norm"]
    top, _, eps = page_view(norm, run["eps"], norm, DATASETS[run["dataset"]].input_shape)
    bundle = standard_bundle(run["id"], run["dataset"], eps=eps, norm=norm, top=top, n=PAGE_POINTS)
    return [bundle.curve, bundle.checks, *(spec for _, spec in bundle.at_eps)], (run["id"], run["dataset"], eps, norm)


def shippable(run: dict) -> bool:
    return run["id"].startswith(SHIPPED_PREFIX) and run["norm"] in ("linf", "l2") and bool(run["eps"])


def export_shipped_evaluations(only: list[str] | None = None, folder: Path | None = None,
                               on_start: Callable[[str], None] | None = None) -> dict[str, int]:
    """Compute and write the page's default evaluations of the shipped models (those whose checkpoint stem is in
    ``only``, or all); return {run id: rows written}. A model's old rows are replaced."""
    folder = folder or EVALUATIONS_DIR
    written = {}
    with tempfile.TemporaryDirectory(prefix="atlas-ship-") as scratch:
        registry = Registry(scratch)
        register_shipped(registry, evaluations=False)  # computed afresh, never read back from assets
        # The patch models have no Robustness page, hence nothing to ship for them.
        runs = [r for r in chosen_shipped(registry, only).values() if shippable(r)]
        for run in runs:
            if on_start is not None:
                on_start(run["id"])
            specs, (run_id, dataset, eps, norm) = page_specs(run)
            for spec in specs:
                evaluate(spec, registry=registry)
            trust_checks_for(registry, run_id, dataset, eps=eps, norm=norm)
            ids = {spec.eval_id for spec in specs} | {trust_config(run_id, dataset, eps=eps, norm=norm)[1]}
            target = folder / run_id
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for row in registry.evaluations(run_id):
                if row["id"] not in ids:
                    continue
                if row["table_path"]:
                    atomic_write_bytes(target / f"{row['id']}.parquet", Path(row["table_path"]).read_bytes())
                atomic_write_json(target / f"{row['id']}.json", {k: row[k] for k in ("id", "run_id", "config",
                                                                                      "summary")})
            written[run_id] = len(ids)
    return written
