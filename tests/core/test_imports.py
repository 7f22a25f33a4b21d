"""Importing checkpoints: accepted ones are registered with their files; refused ones leave nothing behind."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError, RegistryError
from core.store import Registry
from core.store.imports import delete_run_files, import_checkpoint

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "models" / "digits-smallcnn-erm"


def files() -> tuple[bytes, bytes]:
    return SHIPPED.with_suffix(".safetensors").read_bytes(), SHIPPED.with_suffix(".json").read_bytes()


def assert_nothing_stored(reg: Registry) -> None:
    assert reg.list_runs() == []
    imports = reg.home / "imports"
    assert not imports.exists() or list(imports.iterdir()) == []
    assert [p.name for p in reg.home.iterdir() if p.name.startswith(".import-")] == []


def test_a_valid_checkpoint_is_registered_and_deletable() -> None:
    reg = Registry()
    weights, meta = files()
    run = import_checkpoint(reg, weights, meta, name="my model")
    assert run["source"] == "imported" and run["name"] == "my model" and run["dataset"] == "digits"
    assert Path(run["checkpoint_path"]).read_bytes() == weights
    assert run["final_metrics"]["clean_acc"] > 0.9
    with pytest.raises(CheckpointError, match="already imported"):
        import_checkpoint(reg, weights, meta)
    delete_run_files(reg, run["id"])
    assert not Path(run["run_dir"]).exists() and reg.find_run(run["id"]) is None


def test_an_import_of_shipped_weights_gets_the_shipped_figures_and_is_named_their_twin() -> None:
    """The same weights read 50.7 % robust as shipped and 51.2 % as imported (two measurements); now both are the
    headline protocol's, and the import is said to be the shipped model byte for byte."""
    from core.store.imports import same_weights
    from core.store.shipped import register_shipped

    reg = Registry()
    register_shipped(reg)
    run = import_checkpoint(reg, *files())
    shipped = reg.get_run("shipped-digits-smallcnn-erm")["final_metrics"]
    for key in ("clean_acc", "robust_acc", "n", "attack", "eps", "per_class_robust_acc"):
        assert run["final_metrics"][key] == shipped[key], key
    assert [t["id"] for t in same_weights(reg, run)] == ["shipped-digits-smallcnn-erm"]
    assert [t["id"] for t in same_weights(reg, reg.get_run("shipped-digits-smallcnn-pgd-at"))] == []


def _mismatched_meta(meta: bytes) -> bytes:
    data = json.loads(meta)
    data["arch_kwargs"]["width"] = 16
    return json.dumps(data).encode()


@pytest.mark.parametrize("case,match", [
    ("truncated", "truncated|size"), ("pickle", "pickle"), ("too-big", "limit"), ("mismatch", "shape"),
    ("bad-json", "JSON|json"), ("unknown-dataset", "dataset"), ("nan-eps", '"eps".*nan'),
    ("negative-eps", '"eps".*-0.1'), ("text-eps", '"eps".*big'), ("unknown-norm", '"norm".*l3'),
    # Without a dataset the run was stored under "unknown", a dataset no page offers, and blocked a re-import.
    ("no-dataset", 'lacks "dataset".*digits'), ("list-dataset", r'"dataset" is \[.digits.\]'),
], ids=str)
def test_refusals_say_why_and_store_nothing(case: str, match: str) -> None:
    reg = Registry()
    weights, meta = files()
    kwargs = {}
    if case == "truncated":
        weights = weights[: len(weights) // 2]
    elif case == "pickle":
        weights = pickle.dumps({"weight": [1, 2, 3]})
    elif case == "too-big":
        kwargs["max_bytes"] = 1000
    elif case == "mismatch":
        meta = _mismatched_meta(meta)
    elif case == "bad-json":
        meta = b"{not json"
    elif case.endswith("eps") or case == "unknown-norm":
        field, value = {"nan-eps": ("eps", float("nan")), "negative-eps": ("eps", -0.1), "text-eps": ("eps", "big"),
                        "unknown-norm": ("norm", "l3")}[case]
        meta = json.dumps({**json.loads(meta), field: value}).encode()
    elif case == "no-dataset":
        meta = json.dumps({k: v for k, v in json.loads(meta).items() if k != "dataset"}).encode()
    elif case == "list-dataset":
        meta = json.dumps({**json.loads(meta), "dataset": ["digits"]}).encode()
    else:
        meta = json.dumps({**json.loads(meta), "dataset": "imagenet"}).encode()
    with pytest.raises(CheckpointError, match=match):
        import_checkpoint(reg, weights, meta, **kwargs)
    assert_nothing_stored(reg)


def test_shipped_models_cannot_be_deleted() -> None:
    from core.store.shipped import register_shipped

    reg = Registry()
    run_id = register_shipped(reg)[0]
    with pytest.raises(RegistryError, match="shipped"):
        delete_run_files(reg, run_id)
    assert (SHIPPED.parent / f"{run_id.removeprefix('shipped-')}.safetensors").exists()


def test_a_name_clash_gets_a_suffix_and_a_rename_cannot_create_one() -> None:
    """Names are how models are picked in the sidebar: two models of a dataset never share one."""
    from core.store.shipped import register_shipped

    reg = Registry()
    register_shipped(reg)
    weights, meta = files()
    shipped_name = json.loads(meta)["name"]
    run = import_checkpoint(reg, weights, meta)
    assert run["name"] == f"{shipped_name} (2)"
    with pytest.raises(RegistryError, match="already called"):
        reg.rename_run(run["id"], shipped_name)
    reg.rename_run(run["id"], "  my ERM  ")
    assert reg.get_run(run["id"])["name"] == "my ERM"
    reg.rename_run(run["id"], "my ERM")  # its own name is no clash
    names = [r["name"] for r in reg.list_runs(dataset="digits")]
    assert len(names) == len(set(names))


def _checkpoint(tmp_path: Path, meta: dict, **arch_kwargs: int) -> tuple[bytes, bytes]:
    """A freshly initialised SmallCNN saved with ``meta``: the files a user would upload."""
    from core.models import build_model, save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(build_model("smallcnn", **arch_kwargs), meta, tmp_path / "mine")
    return path.read_bytes(), path.with_suffix(".json").read_bytes()


@pytest.mark.parametrize("kwargs,dataset,match", [
    ({"in_channels": 3, "image_size": 32}, "digits", r"does not take digits's inputs \(1×8×8\)"),
    ({"num_classes": 3}, "digits", "gives 3 outputs per input, but digits has 10 classes"),
    ({}, "cifar10", r"does not take cifar10's inputs \(3×32×32\)"),
], ids=["rgb32-for-digits", "3-classes-for-digits", "digits-model-as-cifar10"])
def test_a_model_that_does_not_fit_its_dataset_is_refused(tmp_path: Path, kwargs: dict, dataset: str,
                                                          match: str) -> None:
    """The Attack Lab would otherwise show a traceback (wrong input shape) or an index error (too few classes).
    cifar10's files are not here: its registered shape is checked all the same."""
    reg = Registry()
    weights, meta = _checkpoint(tmp_path, {"dataset": dataset, "method": "erm", "eps": 0.1, "norm": "linf"},
                                **kwargs)
    with pytest.raises(CheckpointError, match=match):
        import_checkpoint(reg, weights, meta)
    assert_nothing_stored(reg)


def test_an_imported_model_is_measured_not_taken_at_its_word(tmp_path: Path) -> None:
    """A random model whose JSON claims the ERM model's figures: the hub must show what it really does."""
    reg = Registry()
    claimed = {"clean_acc": 0.984, "robust_acc": 0.507}
    weights, meta = _checkpoint(tmp_path, {"dataset": "digits", "method": "erm", "eps": 0.1, "norm": "linf",
                                           "metrics": claimed})
    metrics = import_checkpoint(reg, weights, meta)["final_metrics"]
    assert metrics["clean_acc"] < 0.5 and metrics["robust_acc"] < 0.5, "an untrained model is near chance"
    assert metrics["reported_clean_acc"] == 0.984 and metrics["reported_robust_acc"] == 0.507
    assert metrics["attack"] == "pgd-20" and metrics["eps"] == 0.1 and "reported" not in metrics
    assert sorted(metrics["per_class_robust_acc"]) == [str(c) for c in range(10)]
    # The shipped ERM model is measured as it was for shipping (PGD-20 on its 450 points): its own figures exactly.
    shipped = import_checkpoint(reg, *files())["final_metrics"]
    assert (shipped["clean_acc"], shipped["robust_acc"]) == (shipped["reported_clean_acc"],
                                                             shipped["reported_robust_acc"])


def test_reimporting_names_the_model_and_dataset_that_holds_the_weights() -> None:
    reg = Registry()
    weights, meta = files()
    import_checkpoint(reg, weights, meta, name="first try")
    with pytest.raises(CheckpointError, match="already imported as “first try” .* for dataset digits; .* delete"):
        import_checkpoint(reg, weights, meta)


def test_an_old_import_under_an_unknown_dataset_is_named_with_a_way_out() -> None:
    """Before the dataset was required, an import without one was stored under "unknown": the refusal of a
    re-import said to pick that dataset in the sidebar, which does not offer it. It names the CLI's delete."""
    reg = Registry()
    weights, meta = files()
    run = import_checkpoint(reg, weights, meta)
    with reg.transaction() as db:  # what such an import left behind
        db.execute("UPDATE runs SET dataset = 'unknown' WHERE id = ?", (run["id"],))
    with pytest.raises(CheckpointError, match=f"for dataset unknown; .* python -m core runs delete {run['id']}"):
        import_checkpoint(reg, weights, meta)
