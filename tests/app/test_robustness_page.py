"""The Robustness page under AppTest: the shipped models' default view comes from assets/evaluations without a
single attack; any other choice is computed once and stored in ATLAS_HOME (the browser test draws every view:
tests/e2e/test_lab_and_robustness_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.evaluation.suite as suite
import core.evaluation.trust as trust
from core.store import Registry
from core.store.shipped import EVALUATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_defaults_come_from_the_shipped_evaluations_and_other_choices_are_computed_once(
        monkeypatch: pytest.MonkeyPatch, atlas_home: Path) -> None:
    computed = []
    real = suite.per_sample_table

    def counting(model, data, attack, eps_grid, **kwargs):
        computed.append((attack.name, len(data)))
        return real(model, data, attack, eps_grid, **kwargs)

    monkeypatch.setattr(suite, "per_sample_table", counting)
    trust_runs = []
    real_run = trust.run_trust_checks

    def counting_trust(*args, **kwargs):
        trust_runs.append(1)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(trust, "run_trust_checks", counting_trust)

    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/robustness.py").run()
    assert not at.exception, at.exception
    assert computed == [] and trust_runs == [], "the default view of the shipped models needs no attack"
    assert len(at.multiselect(key="rob_models").value) == 2
    assert any("least robust class" in m.label for m in at.metric)
    rows = [r for run in at.multiselect(key="rob_models").value for r in Registry().evaluations(run)]
    assert rows and all(Path(r["table_path"]).parent.parent == EVALUATIONS_DIR for r in rows if r["table_path"])

    # Another number of test points for one model: computed here (curve, checks, 7 attacks at ε), then stored.
    at.multiselect(key="rob_models").set_value(at.multiselect(key="rob_models").value[:1]).run()
    at.selectbox(key="rob_n").set_value(100).run()
    assert not at.exception, at.exception
    assert len(computed) == 9 and {n for _, n in computed} == {100}, computed
    at.selectbox(key="rob_n").set_value(360).run()
    at.selectbox(key="rob_n").set_value(100).run()
    assert len(computed) == 9, "stored evaluations are never computed twice"
    stored = [r for r in Registry().evaluations(at.multiselect(key="rob_models").value[0])
              if r["config"].get("n") == 100]
    assert len(stored) == 9 and all(Path(r["table_path"]).is_relative_to(atlas_home) for r in stored)
