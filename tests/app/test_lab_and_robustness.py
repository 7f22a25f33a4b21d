"""Attack Lab page under AppTest on the shipped digits models (the Robustness page is driven in a real browser:
tests/e2e/test_lab_and_robustness_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.evaluation.lab as lab

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240).run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def verdicts(at: AppTest) -> list[str]:
    return [m.value for m in at.metric if m.label == "prediction"]


def test_the_eps_slider_changes_the_prediction_without_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = lab.sweep_example

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(lab, "sweep_example", counting)
    at = open_page("attack_lab")
    assert len(calls) == 2, "one batched grid per model (primary and comparison)"
    slider = at.slider(key="lab_eps")
    slider.set_value(0.0).run()
    at_zero = verdicts(at)
    assert at_zero == ["0", "0"], "class 0's first test digit is correct at ε = 0 for both models"
    at.slider(key="lab_eps").set_value(slider.max).run()
    at_max = verdicts(at)
    assert not at.exception
    assert at_max != at_zero and all(v != "0" for v in at_max), "both models are fooled at the largest ε"
    assert len(calls) == 2, "moving the slider only indexed into the cached grids"


def test_changing_the_attack_recomputes_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = lab.sweep_example
    monkeypatch.setattr(lab, "sweep_example", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    at = open_page("attack_lab")
    at.selectbox(key="lab_attack").set_value("FGSM").run()
    assert not at.exception
    assert calls == ["pgd", "pgd", "fgsm", "fgsm"]


def test_a_target_equal_to_the_true_class_is_refused_on_screen() -> None:
    at = open_page("attack_lab")
    at.selectbox(key="lab_target_pgd").set_value(0).run()
    assert not at.exception
    assert any("true class" in e.value for e in at.error)
    assert not at.slider, "nothing is attacked"


@pytest.mark.parametrize("mode", ["By index", "At random", "Among those that flip"])
def test_every_way_of_picking_an_example_works(mode: str) -> None:
    at = open_page("attack_lab")
    at.segmented_control(key="lab_mode").set_value(mode).run()
    assert not at.exception and not at.error
    assert len(verdicts(at)) == 2



def test_an_example_misclassified_before_the_attack_is_not_called_fooled() -> None:
    """The badge credits the attack only when the clean prediction was right (an upload's label is the user's
    word, and a dataset example can be misclassified too)."""
    import torch

    from core.data import load_dataset
    from core.models import load_checkpoint

    data = load_dataset("digits", "test")
    models = [load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{m}.safetensors")[0]
              for m in ("pgd-at", "erm")]
    with torch.no_grad():
        wrong = torch.stack([m(data.x).argmax(1) != data.y for m in models])
    index = int(wrong.any(0).nonzero()[0])
    at = open_page("attack_lab")
    at.segmented_control(key="lab_mode").set_value("By index").run()
    at.number_input(key="lab_index").set_value(index).run()
    assert not at.exception
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert len(badges) == 2, badges
    assert sum("misclassified before any attack" in b for b in badges) == int(wrong[:, index].sum()), badges
    assert sum("fooled" in b for b in badges) <= 2 - int(wrong[:, index].sum())


def test_the_smallest_flipping_eps_is_never_above_the_grids_first_flip() -> None:
    import numpy as np

    from core.data import load_dataset
    from core.models import load_checkpoint
    from dashboard.components.lab_views import smallest_flip

    data = load_dataset("digits", "test")
    model = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-pgd-at.safetensors")[0]
    grid = list(np.round(np.linspace(0.0, 0.3, 41), 6))
    for i in range(6):
        sweep = lab.sweep_example(model, data.x[i], int(data.y[i]), "pgd", {"norm": "linf", "steps": 10}, grid)
        flip = lab.minimal_flip(model, data.x[i], int(data.y[i]), "linf")
        value, text = smallest_flip(sweep, flip)
        first = sweep.flip_index()
        known = [v for v in (flip["eps"], None if first is None else float(sweep.eps_grid[first])) if v is not None]
        assert value == (min(known) if known else None), (value, known)
        assert text.endswith(".")
