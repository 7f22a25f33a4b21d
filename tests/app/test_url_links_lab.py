"""The Attack Lab's URL while its example is picked by hand: the default ε stays out of it, and a choice out of range
leaves the controls below the field on screen (and in the URL) with the message at the field."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_lab() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("../pages/attack_lab.py").run()
    assert not at.exception, at.exception
    return at


def test_picking_an_example_by_index_leaves_the_default_eps_out_of_the_url() -> None:
    """Typing a test index put ?lab_eps=0.1, the slider's start, in the URL: the slider's default was 0, so the
    start the page gives it counted as the user's choice."""
    at = open_lab()
    at.segmented_control(key="lab_mode").set_value("By index").run()
    at.number_input(key="lab_index").set_value(5).run()
    assert not at.exception, at.exception
    assert at.slider(key="lab_eps").value == 0.1
    assert "lab_eps" not in at.query_params, dict(at.query_params)
    # Another ε is the user's and goes in the URL.
    at.slider(key="lab_eps").set_value(0.2).run()
    at.number_input(key="lab_index").set_value(6).run()
    assert at.slider(key="lab_eps").value == 0.2


def test_a_which_one_out_of_range_keeps_the_controls_below_it() -> None:
    """An out-of-range "Which one" hid the attack's controls: they lost their values (the attack came back as PGD
    once the field was fixed) and left the URL. The ε slider and the projector toggle wait for the example, and come
    back as they were."""
    at = open_lab()
    at.selectbox(key="lab_attack").select("FGSM").run()
    at.toggle(key="lab_large").set_value(True).run()
    at.slider(key="lab_eps").set_value(0.2).run()
    at.number_input(key="lab_which").set_value(999).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Which one (1–44) is 999; allowed: 1 to 44"]
    assert at.selectbox(key="lab_attack").value == "FGSM"
    assert [n.key for n in at.selectbox if n.key.startswith("lab_norm_")] == ["lab_norm_fgsm"]
    at.number_input(key="lab_which").set_value(3).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="lab_attack").value == "FGSM" and at.toggle(key="lab_large").value is True
    assert at.slider(key="lab_eps").value == 0.2
    assert "#3 of its class" in " ".join(c.value for c in at.caption)
