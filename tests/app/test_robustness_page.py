"""The Robustness page under AppTest: the shipped models' default view comes from assets/evaluations without a
single attack; any other choice is computed once and stored in ATLAS_HOME; a new ε computes its attacks only when
asked (the browser test draws every view:
tests/e2e/test_lab_and_robustness_browser.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import core.evaluation.suite as suite
import core.evaluation.trust as trust
from core.jobs import list_jobs
from core.store import Registry
from core.store.shipped import EVALUATIONS_DIR
from dashboard.components import robustness_charts as charts

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def _stars(at: AppTest) -> list[str]:
    curve = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Robust accuracy vs ε")
    return [t["name"] for t in curve["data"] if t.get("marker", {}).get("symbol") == "star"]


def test_defaults_come_from_the_shipped_evaluations_and_other_choices_are_computed_once(
        monkeypatch: pytest.MonkeyPatch, atlas_home: Path) -> None:
    """Also: moving "ε for the per-class views" must not start a minute of attacks. The minimal-norm run answers a
    new ε at once; PGD-100, Temperature-PGD, the quick ensemble and the trust checks run on a button, here or as a
    background job in its own process."""
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
    assert len(_stars(at)) == 1

    # A new ε: answered from the minimal-norm run, nothing computed until asked.
    before = len(computed), len(trust_runs)
    slider = at.select_slider(key="rob_eps_linf")
    default = slider.value
    other, third = [float(v) for v in slider.options if float(v) != default and float(v) > 0.05][:2]
    slider.set_value(third).run()
    assert not at.exception, at.exception
    assert (len(computed), len(trust_runs)) == before, "moving the slider computes nothing"
    assert _stars(at) == [], "no worst-case star without the attacks at ε"
    assert at.button(key="rob_compute_now") and at.button(key="rob_compute_bg")
    assert any("appear once the attacks at" in i.value for i in at.info)
    assert any("minimal-norm attack alone" in c.value for c in at.caption)

    # In the background: one job per model, in its own process (it runs while the page computes another ε below).
    at.button(key="rob_compute_bg").click().run()
    jobs = [j for j in list_jobs(Registry(), limit=5) if j["kind"] == "eval"]
    assert len(jobs) == 1 and len(jobs[0]["args"]["specs"]) == 7 and jobs[0]["args"]["trust"]["eps"] == third
    assert not [b for b in at.button if b.key == "rob_compute_bg"], "a queued job is not offered twice"
    assert any("being computed in the background" in i.value for i in at.info)

    # "Compute them now": here, with a progress bar, exactly the 7 attacks and the trust checks, once.
    at.select_slider(key="rob_eps_linf").set_value(other).run()
    assert len(computed) == before[0]
    at.button(key="rob_compute_now").click().run()
    assert not at.exception, at.exception
    assert len(computed) == before[0] + 7 and len(trust_runs) == before[1] + 1, (computed, trust_runs)
    assert len(_stars(at)) == 1 and not [b for b in at.button if b.key == "rob_compute_now"]
    at.select_slider(key="rob_eps_linf").set_value(default).run()
    at.select_slider(key="rob_eps_linf").set_value(other).run()
    assert len(computed) == before[0] + 7, "computed once, read back after"

    # The job's tables and trust checks are picked up: the star appears and nothing is computed here.
    deadline = time.monotonic() + 240
    while list_jobs(Registry(), active_only=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [j["status"] for j in list_jobs(Registry(), limit=5)] == ["completed"], list_jobs(Registry(), limit=5)
    at.select_slider(key="rob_eps_linf").set_value(third).run()
    assert not at.exception, at.exception
    assert len(_stars(at)) == 1 and len(computed) == before[0] + 7 and len(trust_runs) == before[1] + 1


def test_gain_bars_leave_out_an_attack_that_gains_nothing_and_keep_headroom() -> None:
    """An attack whose gain is 0 in every class drew a legend entry with invisible bars; the tallest bar touched
    the frame."""
    gains = pd.DataFrame({"class": ["0", "1"], "PGD-100": [0.0, 0.0], "quick ensemble": [0.14, 0.05]})
    figure = charts.gain_bars(gains)
    assert [t.name for t in figure.data] == ["quick ensemble"]
    assert figure.layout.yaxis.range[1] > 14 and "PGD-100" in figure.layout.annotations[0].text
    heat = charts.class_eps_heatmap(pd.DataFrame([[1.0, 0.5]], index=["0"], columns=["0.01875", "0.0375"]))
    assert np.allclose(heat.data[0].x, [0.01875, 0.0375]) and heat.layout.xaxis.tickangle == 0
