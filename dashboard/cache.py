"""Every cache wrapper of the app. Registry reads are short-lived data caches; models are resources keyed by
run id + file mtime; everything bounded. Never mutate a returned value."""

from __future__ import annotations

import copy
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import streamlit as st

from core.store import Registry
from core.store.shipped import register_shipped


@st.cache_resource
def registry() -> Registry:
    reg = Registry()
    register_shipped(reg)
    return reg


@st.cache_data(ttl=2, max_entries=16, show_spinner=False)
def runs(dataset: str | None = None) -> list[dict[str, Any]]:
    return registry().list_runs(dataset=dataset)


def run_labels(runs_: list[dict[str, Any]]) -> dict[str, str]:
    """{run id: label} for pickers: the run's name, with its id added where two runs share a name (registries from
    before names were kept unique), since Streamlit tells a picker's options apart by their labels, and "at chance"
    where the run ended at chance level (the hub says so; a picker alone made it look like any other model)."""
    from core.jobs import ended_at_chance

    counts: dict[str, int] = {}
    for run in runs_:
        counts[run["name"]] = counts.get(run["name"], 0) + 1
    labels = {r["id"]: _with_method(r) if counts[r["name"]] == 1 else f"{_with_method(r)} · {r['id']}" for r in runs_}
    return {r["id"]: labels[r["id"]] + (" · at chance" if ended_at_chance(r) else "") for r in runs_}


def _with_method(run: dict[str, Any]) -> str:
    """A run's name, with its method and ε added when the name does not say them (a name the user typed, such as
    "lecture-pgd2", hid what the model is in every picker)."""
    from dashboard.components.labels import SHORT_METHOD_LABELS

    method = SHORT_METHOD_LABELS.get(run["method"], run["method"])
    # As a whole word ("erm" is in "thermal", DALE in "dale-kl-x"): the name must say this method, not another's.
    if re.search(rf"(?<![\w-]){re.escape(method)}(?![\w-])", run["name"], flags=re.IGNORECASE):
        return run["name"]
    threat = "" if run["method"] == "erm" or run["eps"] is None else f" ε={run['eps']:g}"
    return f"{run['name']} · {method}{threat}"


def runs_table(dataset: str | None = None) -> pd.DataFrame:
    rows = []
    for run in runs(dataset):
        metrics = run["final_metrics"]
        rows.append({"id": run["id"], "name": run["name"], "dataset": run["dataset"], "arch": run["arch"],
                     "method": run["method"], "norm": run["norm"], "ε": run["eps"],
                     "clean acc": metrics.get("clean_acc"), "robust acc": metrics.get("robust_acc"),
                     "attack": metrics.get("attack"), "source": run["source"], "status": run["status"],
                     "created": pd.to_datetime(run["created_at"], unit="s")})
    columns = ["id", "name", "dataset", "arch", "method", "norm", "ε", "clean acc", "robust acc", "attack", "source",
               "status", "created"]
    return pd.DataFrame(rows, columns=columns)


@st.cache_data(ttl=1, max_entries=32, show_spinner=False)
def run_epochs(run_id: str) -> list[dict[str, Any]]:
    return [e["metrics"] for e in registry().epochs(run_id)]


@st.cache_data(max_entries=4, show_spinner=False)
def dataset_specs() -> dict[str, dict[str, Any]]:
    from core.data import DATASETS

    return {name: {"kind": s.kind, "input_shape": tuple(s.input_shape), "classes": tuple(s.classes),
                   "needs_files": s.needs_files, "description": s.description} for name, s in DATASETS.items()}


@st.cache_data(max_entries=16, show_spinner=False)
def _trainable_archs(dataset: str, plugin_archs: tuple[str, ...]) -> tuple[str, ...]:
    from core.training.preflight import fitting_archs

    return fitting_archs(dataset)


def trainable_archs(dataset: str) -> tuple[str, ...]:
    """The architectures the Train page offers for ``dataset``: the shipped ones that fit, then the plugins' that
    pass the pre-training probe (each plugin model is built once per dataset and set of loaded plugins)."""
    from core.models import ARCHS
    from core.training.preflight import SHIPPED_ARCHS

    return _trainable_archs(dataset, tuple(sorted(name for name in ARCHS if name not in SHIPPED_ARCHS)))


@st.cache_data(ttl=5, max_entries=16, show_spinner=False)
def missing_files(dataset: str) -> list[str]:
    from core.data import missing_files as missing

    return missing(dataset)


def files_missing(dataset: str) -> bool:
    """Whether ``dataset`` needs standard files that are not on this machine."""
    return bool(dataset_specs()[dataset]["needs_files"] and missing_files(dataset))


@st.cache_data(max_entries=4, show_spinner=False)
def file_bytes(path: str, mtime: float) -> bytes:
    """The bytes of a checkpoint file for download (keyed by mtime so a rewrite is picked up)."""
    return Path(path).read_bytes()


@st.cache_data(max_entries=1, show_spinner=False)
def devices() -> list[str]:
    """CPU, plus every CUDA device. Asks torch only where an NVIDIA driver is present, so a laptop without a GPU
    does not import torch just to draw the sidebar."""
    if not Path("/proc/driver/nvidia/version").exists() and shutil.which("nvidia-smi") is None:
        return ["cpu"]
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


WARM_DELAY_S = 4.0


def _import_engine(umap: bool) -> None:
    time.sleep(WARM_DELAY_S)
    import core.data  # noqa: F401
    import core.evaluation.table  # noqa: F401
    import core.models  # noqa: F401
    import core.training  # noqa: F401

    if umap:
        from core.latent.projection import warm_up

        warm_up()


@st.cache_resource
def warm_engine() -> threading.Thread | None:
    """Import torch and the engine in the background once per server, a moment after the first page is drawn.

    The hub needs no torch, so the first page renders fast; by the time someone opens a page that trains or
    attacks, the imports are done (a page that needs them earlier just waits on Python's import lock). Then UMAP's
    numba code is compiled (``ATLAS_WARM_UMAP=0`` skips it), so the first latent map is not held up by that.
    ``ATLAS_WARM=0`` skips the whole thread (AppTests: a daemon thread still compiling when the test process exits
    can abort it, "terminate called without an active exception"). Both are read here, when the thread starts.
    """
    if os.environ.get("ATLAS_WARM", "1") == "0":
        return None
    thread = threading.Thread(target=_import_engine, args=(os.environ.get("ATLAS_WARM_UMAP", "1") != "0",),
                              name="atlas-warm-engine", daemon=True)
    thread.start()
    return thread


# models, data and attacks --------------------------------------------------------------------------------------
def _checkpoint_mtime(run_id: str) -> float:
    run = registry().get_run(run_id)
    path = run["checkpoint_path"]
    return Path(path).stat().st_mtime if path and Path(path).exists() else 0.0


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _model(run_id: str, device: str, mtime: float) -> tuple[Any, dict[str, Any]]:
    from core.evaluation.suite import load_run_model

    return load_run_model(registry(), run_id, device)


def model(run_id: str, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, checkpoint meta), reloaded when the checkpoint file changes. Do not train it."""
    return _model(run_id, device, _checkpoint_mtime(run_id))


@st.cache_resource(max_entries=8, show_spinner="Loading the data…")
def run_dataset(run_id: str, dataset: str, split: str = "test") -> Any:
    """The data a run is evaluated on (its own dataset parameters when the dataset is its own)."""
    from core.evaluation.suite import run_data

    _, meta = model(run_id)
    return run_data(meta, dataset, split)


@st.cache_data(max_entries=128, show_spinner=False)
def _evaluation(eval_id: str, _spec: Any, device: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    from core.evaluation.suite import evaluate

    model_, _ = model(_spec.run_id, device)
    result = evaluate(_spec, registry=registry(), model=model_, device=device)
    return result.table, result.summary


def evaluation(spec: Any, device: str = "cpu") -> tuple[pd.DataFrame, dict[str, Any]]:
    """The persisted per-sample table of an EvalSpec (computed once, ever; then read from the run's store)."""
    return _evaluation(spec.eval_id, spec, device)


def evaluation_seconds(spec: Any) -> float | None:
    """How long the stored evaluation of ``spec`` took to compute, or None when it is not stored."""
    row = registry().get_evaluation(spec.eval_id)
    return None if row is None else row["summary"].get("seconds")


def is_stored(spec: Any) -> bool:
    """Whether some process (e.g. a background job) has already computed ``spec``; reads no table."""
    return spec.eval_id in stored_ids([spec])


def stored_ids(specs: Sequence[Any]) -> set[str]:
    """The eval ids among ``specs`` already computed (by anyone): one registry query for all of them."""
    from core.evaluation.suite import persisted_ids

    return persisted_ids(registry(), specs)


@st.cache_data(max_entries=64, show_spinner=False)
def sweep(run_id: str, device: str, example_key: str, _x: Any, y: int, attack: str,
          attack_items: tuple[tuple[str, Any], ...], eps_grid: tuple[float, ...], seed: int) -> Any:
    """The Attack Lab's whole ε grid for one example, one batched attack call (the slider only indexes into it).

    ``example_key`` names the example (dataset index, or the upload's hash), so the tensor itself is not hashed.
    """
    from core.evaluation import lab

    model_, _ = model(run_id, device)
    return lab.sweep_example(model_, _x, y, attack, dict(attack_items), list(eps_grid), seed=seed)


@st.cache_data(max_entries=64, show_spinner=False)
def minimal_flip(run_id: str, device: str, example_key: str, _x: Any, y: int, norm: str) -> dict[str, Any]:
    from core.evaluation import lab

    model_, _ = model(run_id, device)
    return lab.minimal_flip(model_, _x, y, norm)


@st.cache_data(max_entries=32, show_spinner=False)
def trust_checks(run_id: str, dataset: str, eps: float, norm: str, device: str) -> list[dict[str, Any]]:
    from core.evaluation.suite import trust_checks_for

    model_, _ = model(run_id, device)
    return trust_checks_for(registry(), run_id, dataset, eps=eps, norm=norm, device=device, model=model_)


def stored_trust_checks(run_id: str, dataset: str, eps: float, norm: str) -> list[dict[str, Any]] | None:
    """The trust checks at ε when some process has computed them on the run's current weights; computes nothing."""
    from core.evaluation.suite import stored_trust_checks as stored

    return stored(registry(), run_id, dataset, eps=eps, norm=norm)


# latent space ----------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False)
def layers(run_id: str, device: str) -> dict[str, str]:
    """{layer name: readable label} for a run's model (penultimate first)."""
    from core.latent import describe_layer, layer_names

    model_, _ = model(run_id, device)
    return {name: describe_layer(model_, name) for name in layer_names(model_)}


@st.cache_data(max_entries=24, show_spinner=False)
def _latent(spec: Any, device: str, mtime: float) -> Any:
    from core.latent import latent_map

    # A private copy: forward hooks on the shared cached model would see (and disturb) other sessions' passes.
    model_ = copy.deepcopy(model(spec.run_id, device)[0])
    return latent_map(spec, registry=registry(), model=model_, device=device)


def latent(spec: Any, device: str = "cpu") -> Any:
    """A latent map (persisted under the run; recomputed only when the checkpoint changes). Do not mutate it."""
    return _latent(spec, device, _checkpoint_mtime(spec.run_id))


# trade-offs -------------------------------------------------------------------------------------------------------
@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def run_history(run_id: str) -> list[dict[str, Any]]:
    """Per-epoch metrics: the registry's rows for runs trained here, the checkpoint's history for shipped ones."""
    rows = run_epochs(run_id)
    if rows:
        return rows
    from core.evaluation.suite import run_meta

    run = registry().get_run(run_id)
    return list(run_meta(registry(), run_id).get("history", [])) if run["checkpoint_path"] else []


@st.cache_data(max_entries=16, show_spinner=False)
def _logit_bias(run_id: str, device: str, mtime: float, dataset: str, eps: float, norm: str,
                bound: float) -> Any:
    from core.training.classwise import tune_logit_bias

    model_, _ = model(run_id, device)
    data = run_dataset(run_id, dataset)
    half = len(data) // 2
    # Tuned on even-indexed test points, reported on the odd ones: the bias never sees the points it is judged on.
    return tune_logit_bias(model_, data.subset(indices=range(0, 2 * half, 2)), eps=eps, norm=norm,
                           max_clean_drop=bound, evaluate_on=data.subset(indices=range(1, 2 * half, 2)))


def logit_bias(run_id: str, dataset: str, eps: float, norm: str, bound: float, device: str = "cpu") -> Any:
    return _logit_bias(run_id, device, _checkpoint_mtime(run_id), dataset, eps, norm, bound)


# features ---------------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False)
def _feature_sample(run_id: str, device: str, mtime: float, dataset: str, n: int, eps: float,
                    norm: str) -> dict[str, Any]:
    """The first n test points and their PGD-10 adversarial twins: one attack shared by both feature reports."""
    from core.features.report import adversarial

    model_, _ = model(run_id, device)
    data = run_dataset(run_id, dataset).subset(n)
    x_adv, pred_adv = adversarial(model_, data.x, data.y, eps, norm)
    return {"x": data.x, "y": data.y, "x_adv": x_adv, "pred_adv": pred_adv.numpy(), "classes": len(data.classes)}


def feature_sample(run_id: str, dataset: str, n: int, eps: float, norm: str, device: str = "cpu") -> dict[str, Any]:
    return _feature_sample(run_id, device, _checkpoint_mtime(run_id), dataset, n, eps, norm)


@st.cache_data(max_entries=16, show_spinner=False)
def _attributions(run_id: str, device: str, mtime: float, dataset: str, n: int, eps: float, norm: str,
                  method: str) -> dict[str, Any]:
    from core.features.report import attribution_report

    sample = feature_sample(run_id, dataset, n, eps, norm, device)
    model_ = copy.deepcopy(model(run_id, device)[0])  # captum's Grad-CAM hooks must not touch the shared model
    return attribution_report(model_, sample["x"], sample["y"], sample["x_adv"], method)


def attributions(run_id: str, dataset: str, n: int, eps: float, norm: str, method: str,
                 device: str = "cpu") -> dict[str, Any]:
    return _attributions(run_id, device, _checkpoint_mtime(run_id), dataset, n, eps, norm, method)


@st.cache_data(max_entries=16, show_spinner=False)
def _units(run_id: str, device: str, mtime: float, dataset: str, n: int, eps: float, norm: str, layer: str,
           ablate: int) -> dict[str, Any]:
    from core.features.report import unit_report

    sample = feature_sample(run_id, dataset, n, eps, norm, device)
    model_ = copy.deepcopy(model(run_id, device)[0])  # the ablation hook must not touch the shared model
    return unit_report(model_, layer, sample["x"], sample["y"], sample["x_adv"], eps, norm, ablate=ablate,
                       num_classes=sample["classes"])


def units(run_id: str, dataset: str, n: int, eps: float, norm: str, layer: str, ablate: int,
          device: str = "cpu") -> dict[str, Any]:
    return _units(run_id, device, _checkpoint_mtime(run_id), dataset, n, eps, norm, layer, ablate)


# geometry ---------------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=24, show_spinner=False)
def _plane_comparison(runs_: tuple[tuple[str, str], ...], device: str, mtimes: tuple[float, ...], example_key: str,
                      _x: Any, y: int, spec: Any, other_key: str | None, _other: Any) -> Any:
    from core.geometry.local import compare_on_plane

    models = {label: model(run_id, device)[0] for run_id, label in runs_}
    x = _x.to(device)
    return compare_on_plane(models, x, y, spec, other=None if _other is None else _other.to(device))


def plane_comparison(runs_: list[tuple[str, str]], device: str, example_key: str, x: Any, y: int, spec: Any,
                     other_key: str | None = None, other: Any = None) -> Any:
    """Sections, paths, profiles and curvatures of (run id, label) models on the first one's plane."""
    mtimes = tuple(_checkpoint_mtime(r) for r, _ in runs_)
    return _plane_comparison(tuple(runs_), device, mtimes, example_key, x, y, spec, other_key, other)


@st.cache_data(max_entries=16, show_spinner=False)
def _curvature_sample(run_id: str, device: str, mtime: float, dataset: str, n: int) -> dict[str, Any]:
    from core.geometry.local import curvature_sample

    data = run_dataset(run_id, dataset)
    n = min(n, len(data))
    return curvature_sample(model(run_id, device)[0], data.x[:n].to(device), data.y[:n].to(device))


def curvature_sample(run_id: str, dataset: str, n: int, device: str = "cpu") -> dict[str, Any]:
    """Hessian, CURE and random-vs-adversarial distances on the first n test inputs."""
    return _curvature_sample(run_id, device, _checkpoint_mtime(run_id), dataset, n)


@st.cache_data(max_entries=32, show_spinner=False)
def _geometry_analysis(spec: Any, device: str, mtime: float) -> Any:
    from core.geometry.analysis import analysis

    return analysis(spec, registry=registry(), model=model(spec.run_id, device)[0], device=device)


def geometry_analysis(spec: Any, device: str = "cpu") -> Any:
    """A persisted geometry analysis (DeepFool margins, DCT margins, universal perturbation), computed if missing."""
    return _geometry_analysis(spec, device, _checkpoint_mtime(spec.run_id))


# playground -------------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def playground_langevin(config: Any, step: int, _weights: dict[str, Any], _data: Any, index: int, temperature: float,
                        samples: int, steps: int) -> Any:
    """DALE's samples around one training point of a Playground run at one step (the run's config fixes its data
    and, with the step, its weights)."""
    from core.playground import langevin_panel, load_weights

    model_ = load_weights(config, len(_data.classes), _weights)
    return langevin_panel(model_, _data.train.x[index], int(_data.train.y[index]), eps=config.eps, norm=config.norm,
                          temperature=temperature, samples=samples, steps=steps, seed=config.seed)
