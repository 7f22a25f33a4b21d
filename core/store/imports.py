"""Importing a user's checkpoint (safetensors + JSON) into the registry, and deleting a run with its files.

An import is validated in a temporary folder by the same loader that refuses pickles, truncated files,
mismatched architectures and NaN weights, then checked against its dataset (input shape, number of classes) and
measured as a trained run is (the .json file's own accuracy is kept as ``reported_*``); only a checkpoint that
passes is moved into ATLAS_HOME/imports and registered. Nothing is written to the registry when it is refused.
The hub uploads bytes (:func:`import_checkpoint`, up to 50 MiB); ``python -m core runs import`` copies files from
disk (:func:`import_checkpoint_file`, up to 4 GiB); both then take the same steps.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from core.errors import CheckpointError
from core.store.registry import Registry
from core.store.shipped import created_timestamp

MAX_IMPORT_BYTES = 50 * 1024 * 1024
# Files on disk (``python -m core runs import``) are copied, not uploaded: the cap only guards memory, since loading
# reads the weights once and decodes them once (about twice the file's size at the peak).
MAX_FILE_IMPORT_BYTES = 4 * 1024**3
MAX_META_BYTES = 1024 * 1024
# How to remove a run whose weights are imported again, in the words of where the refusal is shown: the Model hub
# (its default) or a terminal (`python -m core runs import`, scripts): the caller of import_checkpoint chooses.
HUB_DELETE_HINT = "pick dataset {dataset} in the sidebar and delete that model here first"
CLI_DELETE_HINT = "delete that run first: python -m core runs delete {run_id}"
# Checkpoints are NAME.safetensors with NAME.json beside it. Files with these suffixes are pickles (torch.save,
# Lightning's .ckpt, pickle.dump): unpickling one runs any code it holds, so it is refused by its name before a byte
# is read (the loader refuses a pickle under another name by its first bytes).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# How to turn a pickled model into a checkpoint: said wherever a pickle is refused (runs import, eval, the hub).
CONVERT_HINT = ("to convert it, in your own Python and only for a file you trust, load its weights into "
                "core.models.build_model(ARCH, **ARCH_KWARGS) with load_state_dict(torch.load(FILE, "
                "weights_only=True)), then core.models.save_checkpoint(model, {\"dataset\": …}, \"NAME\") writes "
                "NAME.safetensors and NAME.json (examples/plugins/export_weights.py shows the steps)")
# The loader's words for a pickle in disguise (core/models/checkpoint.py), to which CONVERT_HINT is added.
_LOADER_PICKLE_WORDS = "pickle/zip (torch.save) file"


def weights_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a checkpoint's weights file, by its name alone: a pickle (.pt, .pth, .pkl, .ckpt …)
    or any other file that is not NAME.safetensors; None for a .safetensors name. Nothing is read."""
    suffix = Path(path).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return (f"{path} is a pickle/zip (torch.save) file by its name ({suffix}), not safetensors; refusing to load "
                "it: unpickling runs any code the file holds, so the Atlas reads checkpoints only as "
                f"NAME.safetensors with NAME.json beside it; {CONVERT_HINT}")
    if suffix != ".safetensors":
        return (f"{path} is not a checkpoint: checkpoints are NAME.safetensors (the weights) with NAME.json (their "
                "metadata: format, arch, arch_kwargs, sha256, dataset) beside it")
    return None


def with_convert_hint(message: str) -> str:
    """A loader error, with how to convert the file added when it refused a pickle in disguise."""
    return f"{message}; {CONVERT_HINT}" if _LOADER_PICKLE_WORDS in message and CONVERT_HINT not in message else message


def import_checkpoint(registry: Registry, weights: bytes, meta_json: bytes, *, name: str | None = None,
                      max_bytes: int = MAX_IMPORT_BYTES, measure: bool = True, device: str = "cpu",
                      delete_hint: str = HUB_DELETE_HINT) -> dict[str, Any]:
    """Validate and register an uploaded checkpoint; return its run row. Raises CheckpointError, saying why.

    ``measure=False`` keeps the .json file's own accuracy (marked ``reported``) instead of measuring the model; the
    model is still checked against its dataset. ``device`` runs the measurement (auto, cpu or cuda[:N]).
    ``delete_hint`` says, when these weights are already imported, how to delete that run where the message is
    shown: the hub's sidebar (the default, HUB_DELETE_HINT) or, from a script in a terminal, CLI_DELETE_HINT;
    ``{dataset}`` and ``{run_id}`` in it are filled in."""
    if len(weights) > max_bytes:
        raise CheckpointError(f"the weights file is {len(weights) / 2**20:.1f} MiB; the limit is "
                              f"{max_bytes / 2**20:.0f} MiB")
    if len(meta_json) > MAX_META_BYTES:
        raise CheckpointError("the JSON metadata file is larger than 1 MiB; it is not a checkpoint's metadata")

    def stage(staged: Path) -> None:
        staged.write_bytes(weights)
        staged.with_suffix(".json").write_bytes(meta_json)

    return _import_staged(registry, stage, ("the .safetensors file", "the .json file"), name=name,
                          max_bytes=max_bytes, measure=measure, device=device, delete_hint=delete_hint)


def import_checkpoint_file(registry: Registry, weights_path: str | os.PathLike[str],
                           meta_path: str | os.PathLike[str] | None = None, *, name: str | None = None,
                           max_bytes: int = MAX_FILE_IMPORT_BYTES, measure: bool = True,
                           device: str = "cpu") -> dict[str, Any]:
    """:func:`import_checkpoint` for files on disk (``python -m core runs import``): the same checks, run id, row and
    files, with a cap suited to disk (``max_bytes``). The weights are copied into the staging folder, never held as
    a second in-memory copy. ``meta_path`` defaults to the .json file of the same name beside the weights."""
    weights_path = Path(weights_path).expanduser()
    meta_path = Path(meta_path).expanduser() if meta_path is not None else weights_path.with_suffix(".json")
    if weights_path.suffix == ".json":
        raise CheckpointError(f"{weights_path} is the .json metadata; give the .safetensors weights file "
                              "(its .json beside it is found by name)")
    # A pickle by its name; another suffix is read and judged by its bytes (weights.bin holding safetensors is fine).
    if weights_path.suffix.lower() in PICKLE_SUFFIXES and (problem := weights_file_problem(weights_path)):
        raise CheckpointError(problem)
    for path, what in ((weights_path, "weights file"), (meta_path, "metadata file")):
        if not path.exists():
            hint = " (give another with --meta PATH.json)" if what == "metadata file" else ""
            raise CheckpointError(f"the {what} {path} does not exist{hint}")
        if not path.is_file():
            raise CheckpointError(f"the {what} {path} is {'a folder' if path.is_dir() else 'not a plain file'}, "
                                  "not a checkpoint file")
    size, meta_size = weights_path.stat().st_size, meta_path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"the weights file {weights_path} is {size / 2**20:.1f} MiB; the limit is "
                              f"{max_bytes / 2**20:.0f} MiB")
    if meta_size > MAX_META_BYTES:
        raise CheckpointError(f"the metadata file {meta_path} is larger than 1 MiB; it is not a checkpoint's "
                              "metadata")

    def stage(staged: Path) -> None:
        try:
            shutil.copyfile(weights_path, staged)
            shutil.copyfile(meta_path, staged.with_suffix(".json"))
        except OSError as exc:
            raise CheckpointError(f"cannot read the checkpoint's files: {exc.strerror or exc} "
                                  f"({exc.filename or weights_path})") from exc

    return _import_staged(registry, stage, (str(weights_path), str(meta_path)), name=name, max_bytes=max_bytes,
                          measure=measure, device=device, delete_hint=CLI_DELETE_HINT)


def _import_staged(registry: Registry, stage: Callable[[Path], None], labels: tuple[str, str], *,
                   name: str | None, max_bytes: int, measure: bool, device: str, delete_hint: str) -> dict[str, Any]:
    """Stage the files in a temporary folder of ATLAS_HOME (``stage(path)`` writes ``model.safetensors`` and
    ``model.json``), validate and measure them there, then move the folder into place and register the run. A
    refusal, an error or an interrupt at any step leaves neither a folder nor a row. ``labels`` name the user's
    weights and .json file in messages, in place of the temporary copies."""
    from core.models import load_checkpoint

    with tempfile.TemporaryDirectory(dir=registry.home, prefix=".import-") as tmp:
        staged = Path(tmp) / "model.safetensors"
        stage(staged)
        try:
            model, meta = load_checkpoint(staged, max_bytes=max_bytes)
        except CheckpointError as exc:
            # Name the user's files, not our temporary copies.
            json_file = str(staged.with_suffix(".json"))
            text = str(exc).replace(f"checkpoint metadata {json_file}", labels[1])
            text = text.replace(json_file, labels[1])
            raise CheckpointError(with_convert_hint(text.replace(str(staged), labels[0]))) from exc
        _check_meta(meta)
        # The loader has checked that the JSON's sha256 is the weights' own: the id is the weights' digest.
        run_id = f"import-{meta['sha256'][:12]}"
        _refuse_imported(registry, run_id, delete_hint)
        metrics = _measured_or_reported(model, meta, measure=measure, device=device)
        # Again after the measurement (seconds): the same weights imported meanwhile (another tab, the CLI) own
        # that folder now, and clearing it below would leave their run without its checkpoint.
        _refuse_imported(registry, run_id, delete_hint)
        folder = registry.home / "imports" / run_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # left by a run deleted without its files, or an import killed before registering
            shutil.rmtree(folder)
        shutil.move(tmp, folder)
    dataset = meta["dataset"]
    # Names are how models are picked: a clash (e.g. re-importing a shipped model's weights) gets a suffix.
    wanted = (name or meta.get("name") or f"imported {meta['arch']}").strip()[:110]
    try:
        return registry.create_run(
            run_id, name=registry.unique_name(dataset, wanted), dataset=dataset, arch=meta["arch"],
            method=str(meta.get("method", "unknown")),
            norm=meta.get("norm"), eps=_float_or_none(meta.get("eps")), config=meta.get("hparams", {}) or {},
            status="imported", source="imported", checkpoint_path=str(folder / "model.safetensors"),
            created_at=created_timestamp(meta),
            final_metrics=metrics, run_dir=str(folder))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def same_weights(registry: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The other models of ``run``'s dataset whose weights are byte for byte ``run``'s (the sha256 their .json files
    record), as re-importing a shipped model's files makes one: said on import, so two rows are known to be one
    model. A checkpoint whose .json cannot be read is skipped, not an error here."""
    from core.models.checkpoint import read_checkpoint_meta

    def sha(path: str | None) -> str | None:
        try:
            return read_checkpoint_meta(path)["sha256"] if path else None
        except (CheckpointError, OSError):
            return None

    mine = sha(run["checkpoint_path"])
    return [other for other in registry.list_runs(dataset=run["dataset"])
            if mine and other["id"] != run["id"] and sha(other["checkpoint_path"]) == mine]


def _refuse_imported(registry: Registry, run_id: str, delete_hint: str) -> None:
    from core.data import DATASETS

    existing = registry.find_run(run_id)
    if existing is not None:
        # An import from before the dataset was required may sit under "unknown", which the sidebar does not offer.
        hint = (delete_hint if existing["dataset"] in DATASETS else CLI_DELETE_HINT).format(
            dataset=existing["dataset"], run_id=run_id)
        raise CheckpointError(
            f"these weights are already imported as “{existing['name']}” (run {run_id}) for dataset "
            f"{existing['dataset']}; to import them again with other metadata, {hint}")


def _measured_or_reported(model: Any, meta: dict[str, Any], *, measure: bool = True,
                          device: str = "cpu") -> dict[str, Any]:
    """The model's accuracy as the Atlas measures every model's (core/evaluation/headline.py: PGD-20 at the model's
    ε on the test split's first 1000 points), after checking it fits the dataset. When the dataset's files are not
    here the JSON's own figures are kept, marked ``reported`` (so too with ``measure=False``); a model that does not
    fit the dataset is refused either way."""
    from core.data import DATASETS, load_dataset, missing_files

    reported = meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {}
    name = meta["dataset"]  # checked by _check_meta
    spec = DATASETS[name]
    params = meta.get("dataset_params") or (meta.get("hparams") or {}).get("dataset_params") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"the .json file's \"dataset_params\" must be a JSON object, got {params!r}")
    test = None if missing_files(name) else load_dataset(name, "test", **params)
    shape = tuple(test.x.shape[1:]) if test is not None else tuple(spec.input_shape)
    classes = len(test.classes) if test is not None else spec.num_classes
    _check_fits(model, name, shape, classes)
    if test is None or not measure:
        return {**reported, "reported": True} if reported else {}
    return _measure(model, meta, test, reported, device)


def _check_fits(model: Any, dataset: str, shape: tuple[int, ...], classes: int) -> None:
    import torch

    size = "×".join(str(s) for s in shape)
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, *shape))
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the model does not take {dataset}'s inputs ({size}): {exc}; check the .json file's "
                              "\"dataset\" and \"arch_kwargs\"") from exc
    if tuple(logits.shape) != (2, classes):
        raise CheckpointError(f"the model gives {logits.shape[-1]} outputs per input, but {dataset} has {classes} "
                              "classes; check the .json file's \"dataset\" and \"arch_kwargs\"")


def _measure(model: Any, meta: dict[str, Any], test: Any, reported: dict[str, Any],
             device: str = "cpu") -> dict[str, Any]:
    from core.evaluation.headline import headline_metrics
    from core.utils import resolve_device

    dev = resolve_device(device)  # the hub measures on the CPU; the CLI may pick a GPU
    model.to(dev)
    # The protocol every model in the hub is measured by, so an import stands next to a shipped or trained model.
    metrics = headline_metrics(model, test, meta.get("norm") or "linf", _float_or_none(meta.get("eps")), dev)
    metrics.update({f"reported_{k}": v for k, v in reported.items() if k in ("clean_acc", "robust_acc")})
    return metrics


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_meta(meta: dict[str, Any]) -> None:
    from core.attacks.norms import NORMS
    from core.data import DATASETS

    # The hub lists a model under its dataset and measures it on that dataset's test split: without one, the run
    # was stored under "unknown", which no page offers, and its weights could not be imported again.
    if "dataset" not in meta:
        raise CheckpointError(f"the .json file lacks \"dataset\": the dataset the model was trained on, one of "
                              f"{', '.join(sorted(DATASETS))} (save_checkpoint(model, {{\"dataset\": …}}, path))")
    dataset = meta["dataset"]
    if not isinstance(dataset, str):
        raise CheckpointError(f"the .json file's \"dataset\" is {json.dumps(dataset)}; it must be one name: "
                              f"{', '.join(sorted(DATASETS))}")
    if dataset not in DATASETS:
        raise CheckpointError(f"the checkpoint names dataset {dataset!r}, which the Atlas does not know; "
                              f"known: {', '.join(sorted(DATASETS))}")
    eps = meta.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps)
                            or eps < 0):
        raise CheckpointError(f"the .json file's \"eps\" (the training ε) is {eps!r}; it must be a finite number "
                              "≥ 0, or null for a model trained without attacks")
    norm = meta.get("norm")
    if norm is not None and norm not in NORMS:
        raise CheckpointError(f"the .json file's \"norm\" is {norm!r}; choose from {', '.join(NORMS)} or null")
    json.dumps(meta)


def delete_run_files(registry: Registry, run_id: str) -> None:
    """Delete a trained or imported run: its registry rows, then its folder. Shipped runs are refused."""
    run = registry.get_run(run_id)
    registry.delete_run(run_id)
    folder = Path(run["run_dir"]) if run["run_dir"] else None
    if folder is not None and folder.exists() and registry.home in folder.resolve().parents:
        shutil.rmtree(folder)
    for kind in ("evaluations", "latent"):
        stored = registry.home / kind / run_id
        if stored.exists():
            shutil.rmtree(stored)
