"""A link's value the page refuses is named by its control's on-screen label and the value shown instead, and
state.URL_LABELS keeps up with the controls it names (a renamed or new URL-bound control fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page(page: str, params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def bound_widgets(at: AppTest) -> dict[str, str]:
    """key → label of every widget drawn in the last run whose value is kept in the URL."""
    session = at.session_state._state
    session = getattr(session, "_state", session)  # AppTest wraps Streamlit's SafeSessionState around SessionState
    metadata = session._new_widget_state.widget_metadata

    def walk(node):
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    found = {}
    for node in walk(at._tree):
        key, label = getattr(node, "key", None), getattr(node, "label", None)
        if key is None or label is None:
            continue
        meta = metadata.get(session._key_id_mapper.get_id_from_key(key, None))
        if meta is not None and meta.bind == state.IN_URL:
            found[key] = label
    return found


@pytest.mark.parametrize(("page", "params"), [
    ("attack_lab", {}),
    ("attack_lab", {"lab_mode": "By index", "lab_attack": "Temperature-PGD"}),
    ("attack_lab", {"lab_mode": "Among those that flip", "lab_attack": "FGSM"}),
    ("robustness", {}),
    ("geometry", {"geo_plane": "toward the other image"}),
    ("geometry", {"dataset": "moons"}),
    ("features", {}),
])
def test_each_url_bound_control_has_its_on_screen_label(page: str, params: dict[str, str]) -> None:
    at = open_page(page, params)
    widgets = bound_widgets(at)
    assert len(widgets) >= 4, widgets
    for key, label in widgets.items():
        assert state.url_label(key) is not None, f"{key} ({label!r}) is not in state.URL_LABELS"
        assert state.url_label(key) in label, (key, label, state.url_label(key))


def test_a_refused_link_value_names_the_control_and_the_value_shown_instead() -> None:
    at = open_page("attack_lab", {"lab_eps": "-3", "lab_attack": "Bogus", "lab_class": "7"})
    toasts = [t.value for t in at.toast]
    assert "The link sets ε (lab\\_eps) to “-3”, which this page does not offer: it shows “0.1” instead." in toasts
    assert "The link sets Attack (lab\\_attack) to “Bogus”, which this page does not offer: it shows “PGD” instead." \
        in toasts
    assert len(toasts) == 2, "the class it could take is taken without a word"
    assert at.selectbox(key="lab_class").value == 7
    at = open_page("robustness", {"rob_n": "77"})
    assert [t.value for t in at.toast] == [
        "The link sets Test points (rob\\_n) to “77”, which this page does not offer: it shows “360” instead."]


def test_a_link_eps_between_the_grids_budgets_moves_to_the_nearest_and_says_so() -> None:
    """`?lab_eps=0.123`: the slider read 0.123 while every panel showed the results at ε = 0.12, without a word."""
    at = open_page("attack_lab", {"lab_eps": "0.123"})
    assert at.slider(key="lab_eps").value == pytest.approx(0.12)
    assert at.query_params["lab_eps"] == "0.12"
    assert [t.value for t in at.toast] == [
        "The link sets ε (lab\\_eps) to “0.123”, which this page does not offer: it shows “0.12” instead."]
    assert "at ε = 0.12" in " ".join(m.value for m in at.markdown)
    at = open_page("attack_lab", {"lab_eps": "0.13"})
    assert at.slider(key="lab_eps").value == pytest.approx(0.13) and not at.toast, "a budget of the grid is taken"
    # Moved on the page, then another norm: the URL still held the ℓ∞ grid's 0.13, and setting a parameter bound
    # to a drawn slider raised "Cannot directly set query parameter 'lab_eps'".
    at.slider(key="lab_eps").set_value(0.13).run()
    norm = next(s for s in at.selectbox if s.key.startswith("lab_norm_"))
    norm.select("l2").run()
    assert not at.exception, at.exception
    assert at.slider(key="lab_eps").label.startswith("ε (ℓ2 budget")
