"""Evaluations shipped with the default models (assets/evaluations): complete, current, and refused when stale."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.errors import ConfigError
from core.evaluation.shipped import export_shipped_evaluations, page_specs, shippable
from core.evaluation.suite import is_persisted, load_run_model, run_data, trust_config, weights_digest
from core.evaluation.table import per_sample_table
from core.store import Registry
from core.store.shipped import EVALUATIONS_DIR, register_shipped, register_shipped_evaluations

REGENERATE = "run `python -m core build-defaults --evaluations-only` and commit assets/evaluations"


def _digests(registry: Registry) -> dict[str, str]:
    return {r["id"]: weights_digest(registry, r["id"]) for r in registry.list_runs() if shippable(r)}


def test_the_robustness_page_defaults_of_every_shipped_model_are_shipped(atlas_home: Path) -> None:
    registry = Registry()
    register_shipped(registry)
    runs = [r for r in registry.list_runs() if shippable(r)]
    assert {r["dataset"] for r in runs} >= {"digits", "moons"}
    for run in runs:
        specs, (run_id, dataset, eps, norm) = page_specs(run)
        missing = [s.attack for s in specs if not is_persisted(registry, s)]
        assert not missing, f"{run_id}: {missing} not shipped for the page's defaults; {REGENERATE}"
        trust = registry.get_evaluation(trust_config(run_id, dataset, eps=eps, norm=norm)[1])
        assert trust is not None and trust["summary"]["checks"], f"{run_id}: no trust checks; {REGENERATE}"
        for spec in specs:
            # Read from the repository, not copied into ATLAS_HOME.
            assert Path(registry.get_evaluation(spec.eval_id)["table_path"]).parent == EVALUATIONS_DIR / run_id


def test_a_shipped_table_is_what_the_attack_computes_today(atlas_home: Path) -> None:
    registry = Registry()
    register_shipped(registry)
    run = registry.get_run("shipped-digits-smallcnn-pgd-at")
    specs, _ = page_specs(run)
    checks = specs[1]  # PGD-10 at four ε on 360 points: the cheapest spec with an attack in it
    assert checks.attack == "pgd" and len(checks.eps_grid) == 4
    shipped = pd.read_parquet(registry.get_evaluation(checks.eval_id)["table_path"])
    model, meta = load_run_model(registry, run["id"])
    data = run_data(meta, checks.dataset, checks.split, checks.n)
    fresh = per_sample_table(model, data, checks.build_attack(), checks.eps_grid, seed=checks.seed)
    preds = [c for c in shipped.columns if c.startswith("pred_")]
    assert len(preds) == 5 and list(fresh["index"]) == list(shipped["index"])
    # Same seed, same code: the same predictions (a different CPU may round a boundary point the other way).
    agreement = (fresh[preds].to_numpy() == shipped[preds].to_numpy()).mean()
    assert agreement >= 0.995, f"shipped tables are stale ({agreement:.1%} agreement); {REGENERATE}"


def test_stale_foreign_or_malformed_rows_are_skipped(atlas_home: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    register_shipped(registry)  # imports the real shipped rows
    digests = _digests(registry)
    run_id = "shipped-digits-smallcnn-erm"
    source = EVALUATIONS_DIR / run_id
    row_path = next(p for p in sorted(source.glob("*.json")) if p.with_suffix(".parquet").exists())
    row = json.loads(row_path.read_text())

    fresh = Registry(tmp_path / "other-home")
    register_shipped(fresh)
    folder = tmp_path / "evaluations"
    (folder / run_id).mkdir(parents=True)
    stale = {**row, "id": "0" * 16, "config": {**row["config"], "weights_sha256": "f" * 64}}
    (folder / run_id / f"{stale['id']}.json").write_text(json.dumps(stale))
    shutil.copy(row_path.with_suffix(".parquet"), folder / run_id / f"{stale['id']}.parquet")
    (folder / run_id / "1111111111111111.json").write_text("{not json")
    (folder / run_id / "2222222222222222.json").write_text(json.dumps({**row, "id": "2222222222222222",
                                                                       "run_id": "shipped-moons-mlp-erm"}))
    no_table = {**row, "id": "3" * 16}
    (folder / run_id / f"{no_table['id']}.json").write_text(json.dumps(no_table))
    good = {**row, "id": "4" * 16}
    (folder / run_id / f"{good['id']}.json").write_text(json.dumps(good))
    shutil.copy(row_path.with_suffix(".parquet"), folder / run_id / f"{good['id']}.parquet")

    with caplog.at_level(logging.ERROR):
        added = register_shipped_evaluations(fresh, digests, folder)
    assert added == 1  # only the row of the current weights with its table
    assert fresh.get_evaluation("4" * 16)["table_path"] == str(folder / run_id / f"{'4' * 16}.parquet")
    for skipped in ("0" * 16, "1" * 16, "2" * 16, "3" * 16):
        assert fresh.get_evaluation(skipped) is None
    assert "1111111111111111.json" in caplog.text and "names run shipped-moons-mlp-erm" in caplog.text
    assert register_shipped_evaluations(fresh, digests, folder) == 0  # already there: nothing twice


def test_an_unknown_name_is_refused_before_anything_is_computed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nosuch: no such shipped model; choose from digits-smallcnn-dale"):
        export_shipped_evaluations(only=["nosuch"], folder=tmp_path)
    assert not any(tmp_path.iterdir())
    # A shipped model the page does not show (per-patch ℓ2) has nothing to ship, and that is not an error.
    assert export_shipped_evaluations(only=["patches-patchnet-at"], folder=tmp_path) == {}


def test_export_then_import_round_trip(atlas_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "evaluations"
    written = export_shipped_evaluations(only=["moons-mlp-erm"], folder=folder)
    assert written == {"shipped-moons-mlp-erm": 10}
    files = sorted(p.name for p in (folder / "shipped-moons-mlp-erm").iterdir())
    assert sum(f.endswith(".json") for f in files) == 10 and sum(f.endswith(".parquet") for f in files) == 9
    registry = Registry(tmp_path / "home")
    register_shipped(registry)
    # A registry that has none of them yet gets every row; the page then asks for nothing new.
    with registry.transaction() as con:
        con.execute("DELETE FROM evaluations")
    assert register_shipped_evaluations(registry, _digests(registry), folder) == 10
    specs, _ = page_specs(registry.get_run("shipped-moons-mlp-erm"))
    assert all(is_persisted(registry, s) for s in specs)
