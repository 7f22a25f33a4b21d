"""Persisted evaluations, their views, the standard bundle and evaluation jobs, on the shipped digits models."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import ConfigError
from core.evaluation import views
from core.evaluation.bundle import attack_summary, combine, export_table, standard_bundle
from core.evaluation.suite import EvalSpec, evaluate, is_persisted, load_run_model, persisted_ids, run_data, \
    stored_trust_checks, table_path
from core.jobs import get_job, submit_job
from core.store import Registry
from core.store.shipped import register_shipped

PGD_AT, ERM = "shipped-digits-smallcnn-pgd-at", "shipped-digits-smallcnn-erm"


@pytest.fixture
def registry(atlas_home: Path) -> Registry:
    reg = Registry()
    register_shipped(reg)
    return reg


def spec(**kw) -> EvalSpec:
    fields = dict(run_id=PGD_AT, dataset="digits", attack="pgd", attack_kwargs={"steps": 5}, eps_grid=(0.1,), n=60)
    fields.update(kw)
    return EvalSpec.make(**fields)


@pytest.mark.parametrize("kw,match", [
    ({"eps_grid": (float("nan"),)}, "finite"), ({"eps_grid": (-0.1,)}, "finite number ≥ 0"),
    ({"eps_grid": (1.5,)}, "beyond the linf limit"), ({"eps_grid": ()}, "at least one"),
    ({"attack": "nope"}, "unknown attack"), ({"n": 0}, "positive integer"), ({"split": "val"}, "split"),
], ids=["nan", "negative", "too-large", "empty", "unknown-attack", "n-zero", "split"])
def test_bad_specs_are_refused_with_a_clear_message(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spec(**kw)


def test_spec_ids_are_stable_distinct_and_round_trip() -> None:
    a, b = spec(), spec(eps_grid=(0.2,))
    assert a.eval_id == spec().eval_id and a.eval_id != b.eval_id
    assert EvalSpec.from_dict(a.to_dict()) == a
    minimal = spec(attack="deepfool", attack_kwargs={"norm": "l2"}, eps_grid=(0.3,))
    assert minimal.eps_grid == (100.0,), "a minimal-norm run is capped at the norm's limit, whatever was asked"


def test_an_evaluation_is_computed_once_then_read_from_the_store(registry: Registry) -> None:
    first = evaluate(spec(), registry=registry)
    assert not first.cached and table_path(registry, spec()).is_file()
    row = registry.get_evaluation(spec().eval_id)
    assert row["summary"]["robust_acc"]["0.1"] == pytest.approx(first.summary["robust_acc"]["0.1"])
    again = evaluate(spec(), registry=registry)
    assert again.cached and again.table.equals(first.table)
    # Which of several specs are stored, in one query: only the computed one (another n, another run: not).
    other_run = spec(run_id=ERM)
    assert persisted_ids(registry, [spec(), spec(n=31), other_run]) == {spec().eval_id}
    table_path(registry, spec()).unlink()
    assert persisted_ids(registry, [spec()]) == set() and not is_persisted(registry, spec())
    assert not evaluate(spec(), registry=registry).cached, "a lost table file is recomputed"


def test_robust_accuracy_falls_with_eps_and_reaches_zero_at_half(registry: Registry) -> None:
    grid = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
    for run_id in (ERM, PGD_AT):
        table = evaluate(spec(run_id=run_id, attack_kwargs={"steps": 20}, eps_grid=grid, n=120),
                         registry=registry).table
        curve = views.robust_curve(table, grid)["robust_acc"].to_numpy()
        assert np.all(np.diff(curve) <= 1e-9), f"{run_id}: {curve}"
        assert curve[0] > 0.9 and curve[-1] <= 0.02, f"{run_id}: {curve}"


def test_one_minimal_norm_run_agrees_with_pgd_within_a_few_points(registry: Registry) -> None:
    minimal = evaluate(spec(attack="fmn", attack_kwargs={"norm": "linf"}, n=150), registry=registry).table
    assert (minimal.loc[minimal["pred_clean"] != minimal["y"], "min_norm"] == 0).all()
    grid = (0.05, 0.1, 0.15, 0.2)
    pgd = evaluate(spec(attack_kwargs={"steps": 10}, eps_grid=grid, n=150), registry=registry).table
    from_curve = views.robust_curve(minimal, grid)["robust_acc"].to_numpy()
    from_pgd = views.robust_curve(pgd, grid)["robust_acc"].to_numpy()
    assert np.abs(from_curve - from_pgd).max() <= 0.05, (from_curve, from_pgd)


def test_per_class_views_are_consistent(registry: Registry) -> None:
    table = evaluate(spec(run_id=ERM, n=200), registry=registry).table
    data = run_data({"dataset": "digits"}, "digits", "test", 200)
    per_class = views.per_class_accuracy(table, 0.1, data.classes)
    overall = views.robust_curve(table, [0.1])["robust_acc"][0]
    assert (per_class["robust_acc"] * per_class["n"]).sum() / per_class["n"].sum() == pytest.approx(overall)
    flips = views.flip_matrix(table, 0.1, 10)
    assert np.trace(flips) == 0
    correct = table["pred_clean"] == table["y"]
    assert flips.sum() == int((correct & (table["pred_adv@0.1"] != table["y"])).sum())
    assert views.clean_errors(table) == int((~correct).sum())
    spread = views.disparity(per_class)
    assert spread["worst_acc"] <= spread["mean"] <= spread["best_acc"]
    model, _ = load_run_model(registry, ERM)
    norms = views.class_weight_norms(model, 10)
    assert norms.shape == (10,) and (norms > 0).all()


def test_the_least_robust_class_names_every_class_tied_with_it() -> None:
    """"least robust class 2 · 0.0 %" while classes 5, 8 and 9 were at 0.0 % too."""
    per_class = pd.DataFrame({"class": ["1", "2", "5", "8", "9"], "robust_acc": [0.4, 0.0, 0.0, 0.0, 0.0]})
    spread = views.disparity(per_class)
    assert spread["worst"] == "2" and spread["worst_all"] == ["2", "5", "8", "9"]
    assert views.disparity(per_class.iloc[:2])["worst_all"] == ["2"]


def test_flip_matrix_counts_only_points_the_attack_flipped() -> None:
    """A point already wrong on the clean input is no attack's flip, even when it is wrong after the attack."""
    table = pd.DataFrame({"y": [0, 0, 1, 2, 2], "pred_clean": [0, 0, 2, 2, 2], "pred_adv@0.1": [1, 0, 2, 0, 2],
                          "min_norm": [0.05, np.inf, 0.0, 0.2, np.inf]})
    flips = views.flip_matrix(table, 0.1, 3)
    assert flips.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]
    assert views.clean_errors(table) == 1
    # Class 1's only point is wrong clean, so it has no minimal norm; class 2's flips are found, class 0's too.
    assert views.classes_without_min_norms(table, ["a", "b", "c"]) == {"b": "no correctly classified point"}
    assert views.classes_without_min_norms(table.iloc[[0, 1, 2]], ["a", "b", "c"]) == {
        "b": "no correctly classified point", "c": "no test point"}
    assert views.classes_without_min_norms(table.assign(min_norm=np.inf), ["a", "b", "c"])["a"] == "no flip found"


def test_a_stronger_attack_never_gains_less_than_nothing_over_pgd10() -> None:
    """The stronger attack leaves robust a point of class 1 that PGD-10 broke (it is reported as the per-point worst
    case with PGD-10, so that point stays broken) and breaks one of class 0 that PGD-10 left robust. Its gain over
    PGD-10 was PGD-10's accuracy minus its own alone: −50 points on class 1."""
    y = [0, 0, 1, 1, 2]
    pgd10 = pd.DataFrame({"y": y, "pred_clean": y, "pred_adv@0.1": [0, 0, 0, 1, 2]})
    strong = pd.DataFrame({"y": y, "pred_clean": y, "pred_adv@0.1": [1, 0, 1, 1, 2]})
    alone = views.per_class_accuracy(pgd10, 0.1, "abc")["robust_acc"] - views.per_class_accuracy(
        strong, 0.1, "abc")["robust_acc"]
    assert alone.tolist() == [0.5, -0.5, 0.0], "the stronger attack alone is better on class 1 than PGD-10"
    gain = views.class_gain(pgd10, strong, 0.1, "abc")
    assert gain["gain"].tolist() == [0.5, 0.0, 0.0] and (gain["gain"] >= 0).all()
    assert gain["strong"].tolist() == [0.5, 0.5, 1.0], "the worst case per point of both attacks"
    # Several tables at once (an ensemble's members) are taken point by point: on class 1 PGD-10 and ``other`` each
    # break a different point, so together they break both.
    other = pgd10.assign(**{"pred_adv@0.1": [0, 0, 1, 0, 1]})
    assert views.class_gain(pgd10, [strong, other], 0.1, "abc")["gain"].tolist() == [0.5, 0.5, 1.0]
    # Temperature-PGD by its worst T, T = 1 (PGD-10) counted: 0 where PGD-10 is the lowest, as in the T sweep.
    worst_t = views.worst_setting_gain(pgd10, [strong, other], 0.1, "abc")
    assert worst_t["gain"].tolist() == [0.5, 0.0, 1.0] and worst_t["strong"].tolist() == [0.5, 0.5, 0.0]
    assert views.worst_setting_gain(pgd10, [strong], 0.1, "abc")["gain"].tolist() == [0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="same points"):
        views.class_gain(pgd10, strong.iloc[::-1], 0.1, "abc")


def test_the_worst_case_is_never_above_any_attack(registry: Registry) -> None:
    bundle = standard_bundle(PGD_AT, "digits", eps=0.15, norm="linf", top=0.3, n=80)
    tables = {"min-norm": evaluate(bundle.curve, registry=registry).table}
    for label, s in bundle.at_eps:
        if label in ("pgd-10", "quick", "tpgd T=0.1"):
            tables[label] = evaluate(s, registry=registry).table
    summary = attack_summary(tables, 0.15).set_index("attack")["robust_acc"]
    assert summary["worst case per point"] <= summary.drop("worst case per point").min() + 1e-12
    combined = combine(tables, 0.15)
    broken = ~combined["robust"] & (combined["pred_clean"] == combined["y"])
    assert (combined.loc[broken, "pred_adv@0.15"] != combined.loc[broken, "y"]).all()
    # The page's export: both files read back as the same table.
    csv = pd.read_csv(io.BytesIO(export_table(combined, "csv")))
    parquet = pd.read_parquet(io.BytesIO(export_table(combined, "parquet")))
    pd.testing.assert_frame_equal(parquet, combined)
    pd.testing.assert_frame_equal(csv, combined, check_dtype=False)
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        export_table(combined, "xlsx")


def test_an_evaluation_job_runs_in_its_own_process_and_persists(registry: Registry, subprocess_env: dict) -> None:
    """One job computes several specs of a run (the Robustness page's "in the background"; its trust-check part is
    covered by tests/app/test_robustness_page.py)."""
    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    specs = [spec(attack="quick", attack_kwargs={"steps": 10}, n=40), spec(eps_grid=(0.13,), n=40)]
    job_id = submit_job(registry, "eval", {"specs": [s.to_dict() for s in specs], "device": "cpu"})
    deadline = time.monotonic() + 180
    while get_job(registry, job_id)["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    job = get_job(registry, job_id)
    assert job["status"] == "completed", job["error"]
    assert job["run_id"] == PGD_AT and job["progress"] == 1.0
    assert all(evaluate(s, registry=registry).cached for s in specs), "the page reads the tables the job wrote"
    assert stored_trust_checks(registry, PGD_AT, "digits", eps=0.13, norm="linf") is None, "none were asked for"


def test_an_evaluation_job_refuses_specs_of_several_runs(registry: Registry, subprocess_env: dict) -> None:
    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    job_id = submit_job(registry, "eval", {"specs": [spec().to_dict(), spec(run_id=ERM).to_dict()]})
    deadline = time.monotonic() + 60
    while get_job(registry, job_id)["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    job = get_job(registry, job_id)
    assert job["status"] == "failed" and "one run" in job["error"], job
    assert not is_persisted(registry, spec()), "nothing is half-written"


def test_a_malformed_job_spec_fails_with_its_message(registry: Registry, subprocess_env: dict) -> None:
    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    bad = {**spec().to_dict(), "eps_grid": [-1.0]}
    job_id = submit_job(registry, "eval", {"spec": bad, "device": "cpu"})
    deadline = time.monotonic() + 60
    while get_job(registry, job_id)["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    job = get_job(registry, job_id)
    assert job["status"] == "failed" and "≥ 0" in job["error"]


def test_the_model_is_evaluated_in_eval_mode_and_left_as_found(registry: Registry) -> None:
    model, _ = load_run_model(registry, PGD_AT)
    model.train()
    evaluate(spec(n=20), registry=registry, model=model)
    assert model.training
    assert torch.is_grad_enabled()


def test_new_weights_invalidate_a_stored_evaluation(registry: Registry, tmp_path: Path) -> None:
    """A run id names a config, so resuming or retraining it keeps the id; its old tables must not be reused."""
    from core.models import load_checkpoint, save_checkpoint
    from core.store.imports import delete_run_files, import_checkpoint

    model, meta = load_checkpoint(Path(registry.get_run(ERM)["checkpoint_path"]))
    save_checkpoint(model, meta, tmp_path / "mine.safetensors")
    run = import_checkpoint(registry, (tmp_path / "mine.safetensors").read_bytes(),
                            (tmp_path / "mine.json").read_bytes())
    s = spec(run_id=run["id"], n=30)
    evaluate(s, registry=registry)
    assert evaluate(s, registry=registry).cached
    with torch.no_grad():
        model.head.weight.mul_(-1.0)
    save_checkpoint(model, meta, run["checkpoint_path"])
    assert not evaluate(s, registry=registry).cached, "changed weights are evaluated afresh"
    delete_run_files(registry, run["id"])
    assert not (registry.home / "evaluations" / run["id"]).exists()
    assert registry.get_evaluation(s.eval_id) is None


@pytest.mark.parametrize("top, step, points", [(0.3, 0.02, 15), (2.0, 0.2, 10), (1.0, 0.1, 10), (0.6, 0.05, 12),
                                               (4.0, 0.25, 16), (0.031, 0.002, 16)])
def test_the_robustness_grid_steps_are_round_numbers(top: float, step: float, points: int) -> None:
    """top / 16 gave a lecture hall 0.01875, 0.0375, 0.05625 to read out; now 0.02, 0.04, … (at most 16 points)."""
    import math

    from core.evaluation.bundle import curve_grid, page_view, standard_bundle

    grid = curve_grid(top)
    assert len(grid) == points and math.isclose(grid[0], step) and grid[-1] == top
    assert all(math.isclose(b - a, step) for a, b in zip(grid, grid[1:-1])), grid
    assert all(len(f"{v:g}") <= 5 for v in grid[:-1]), grid
    _, slider, own = page_view("linf", 0.1, "linf", (1, 8, 8))
    assert slider == curve_grid(0.3) and own == 0.1 and own in slider
    checks = standard_bundle("x", "digits", eps=0.1, norm="linf", top=0.3).checks.eps_grid
    assert checks == (0.12, 0.18, 0.24, 0.3), "four evenly spaced PGD-10 checks ending at the top"


def test_progress_names_its_total_before_the_first_batch() -> None:
    """`python -m core eval`'s bar read 0/450 (the points) and then 256/438 (the correctly classified ones, the
    only ones attacked): the total is now reported first, before any attack."""
    from core.attacks import FGSM
    from core.data import load_dataset
    from core.evaluation import per_sample_table
    from core.models import load_checkpoint

    model = load_checkpoint(Path(__file__).resolve().parents[2] / "assets" / "models" /
                            "digits-smallcnn-erm.safetensors")[0]
    data = load_dataset("digits", "test").subset(n=300)
    calls: list[tuple[int, int]] = []
    table = per_sample_table(model, data, FGSM(), [0.05, 0.1], batch_size=128,
                             on_progress=lambda done, total: calls.append((done, total)))
    correct = int((table["pred_clean"] == table["y"]).sum())
    assert 0 < correct < 300
    assert calls[0] == (0, 2 * correct) and calls[-1] == (2 * correct, 2 * correct)
    assert all(total == 2 * correct for _, total in calls)
