"""Importing checkpoints: accepted ones are registered with their files; refused ones leave nothing behind."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

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


def _mismatched_meta(meta: bytes) -> bytes:
    data = json.loads(meta)
    data["arch_kwargs"]["width"] = 16
    return json.dumps(data).encode()


@pytest.mark.parametrize("case,match", [
    ("truncated", "truncated|size"), ("pickle", "pickle"), ("too-big", "limit"), ("mismatch", "shape"),
    ("bad-json", "JSON|json"), ("unknown-dataset", "dataset"), ("nan-eps", '"eps".*nan'),
    ("negative-eps", '"eps".*-0.1'), ("text-eps", '"eps".*big'), ("unknown-norm", '"norm".*l3'),
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
