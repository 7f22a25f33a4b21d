"""Links whose values a page cannot take: each is clamped, or refused with a toast that names it, and never crashes
the page or is ignored without a word (a tester's list: ?rob_eps_l2=1e9, ?geo_index=inf, ?th_runs=abc, ?pg_point=9,
?teaching=maybe, a moons model under ?dataset=digits)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from dashboard import state
from tests.app.test_url_labels import open_page

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
MOONS_AT, MOONS_ERM = "shipped-moons-mlp-pgd-at", "shipped-moons-mlp-erm"
DIGITS_ERM = "shipped-digits-smallcnn-erm"


def toasts(at: AppTest) -> list[str]:
    return [t.value for t in at.toast]


def arrive(page: str, params: dict[str, str]) -> AppTest:
    """Open the app, then arrive at ``page`` with ``params`` in the URL (as a link opened on that page would)."""
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_a_link_eps_of_the_norm_the_robustness_page_does_not_show_is_refused() -> None:
    """?rob_eps_l2=1e9 while the page shows ℓ∞ stayed in the URL, ignored without a word."""
    at = open_page("robustness", {"rob_eps_l2": "1e9", "rob_eps_l1": "3"})
    assert toasts(at) == [
        "The link sets ε (rob\\_eps\\_l2) to “1e9”, which is the ε of ℓ2, while the page shows ℓ∞ (Norm): it is left "
        "out.",
        "The link sets ε (rob\\_eps\\_l1) to “3”, which is the ε of no norm this page has: it is left out."]
    assert "rob_eps_l2" not in at.query_params and "rob_eps_l1" not in at.query_params
    at = open_page("robustness", {"rob_eps_linf": "1e9"})
    assert toasts(at) == [
        "The link sets ε (rob\\_eps\\_linf) to “1e9”, which this page does not offer: it shows “0.1” instead."]


def test_a_link_point_on_toy_data_moves_into_range_and_never_crashes_the_geometry_page() -> None:
    """?geo_index=inf on moons stopped the page with OverflowError; 999999 showed point 0 instead of the last."""
    for value in ("inf", "999999"):
        at = open_page("geometry", {"dataset": "moons", "geo_index": value})
        assert at.number_input(key="geo_index").value == 999
        assert toasts(at) == [f"The link sets Test point (geo\\_index) to “{value}”, which this page does not offer: "
                              "it shows “999” instead."]
    at.number_input(key="geo_index").set_value(5000).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Test point (0–999) is 5000; allowed: 0 to 999"]
    assert at.selectbox(key="geo_plane").value == "deepfool", "the controls below the field are still drawn"


def test_links_to_the_geometry_pages_other_number_fields_are_clamped() -> None:
    """?geo_other=inf and ?geo_steps=inf raised OverflowError; ?geo_eps_linf=1e9 was kept in the field."""
    at = open_page("geometry", {"geo_plane": "Toward an image", "geo_other": "inf", "geo_steps": "inf",
                                "geo_eps_linf": "1e9"})
    assert at.number_input(key="geo_other").value == 449
    assert at.number_input(key="geo_steps").value == 50
    assert at.number_input(key="geo_eps_linf").value == 1.0
    assert len(toasts(at)) == 3 and all("it shows" in t for t in toasts(at)), toasts(at)


def test_a_link_point_for_2d_data_is_refused_on_images() -> None:
    """?geo_index=5 on digits (whose examples the picker chooses) stayed in the URL, ignored."""
    at = open_page("geometry", {"geo_index": "5"})
    assert toasts(at) == ["The link sets Test point (geo\\_index) to “5”, which picks a point of 2-D data; a digits "
                          "test image is picked with Example (By index: Test index): it is left out."]
    assert "geo_index" not in at.query_params


def test_parameters_that_no_page_takes_are_refused() -> None:
    """?th_runs=abc on the Theory Lab and ?pg_point=999 on the Playground were kept and ignored without a word."""
    for page, key, value in (("theory", "th_runs", "abc"), ("playground", "pg_point", "999")):
        at = arrive(page, {key: value})
        escaped = key.replace("_", "\\_")
        assert toasts(at) == [f"The link sets “{escaped}” to “{value}”, which this page does not take from a link: "
                              "it is left out."]
        assert key not in at.query_params
    # What other sites add to a shared link is not the Atlas's to refuse.
    at = arrive("theory", {"utm_source": "mail", "fbclid": "x1"})
    assert toasts(at) == []


def test_every_url_bound_control_has_a_label() -> None:
    """A control bound to the URL whose key state.URL_LABELS does not cover would have its link value refused as a
    parameter no page takes (state.unknown_url_params): every ``bind=state.IN_URL`` key in the code is checked here,
    also those of controls drawn only in some states, which the drawn-widget checks of test_url_labels miss."""
    import ast

    keys = []
    for path in [*(ROOT / "pages").glob("*.py"), *(ROOT / "dashboard").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            kwargs = {k.arg: k.value for k in node.keywords}
            bind, key = kwargs.get("bind"), kwargs.get("key")
            if not (isinstance(bind, ast.Attribute) and bind.attr == "IN_URL") or key is None:
                continue
            if isinstance(key, ast.Constant):
                keys.append((path.name, key.value))
            elif isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
                keys.append((path.name, key.values[0].value + "x"))  # f"geo_eps_{norm}": a prefix key
            elif not isinstance(key, ast.Name):  # key=key in a helper (the lab's norm picker: lab_norm_*)
                keys.append((path.name, ast.unparse(key)))
    assert len(keys) > 30, keys
    assert [(name, key) for name, key in keys if state.url_label(key) is None] == []


def test_a_teaching_value_other_than_off_is_refused() -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params["teaching"] = "maybe"
    at.run()
    assert not at.exception, at.exception
    assert toasts(at) == ["The link sets Teaching mode (teaching) to “maybe”, which it does not offer (a link says "
                          "“teaching=off”, or nothing for on): teaching mode is on."]
    assert "teaching" not in at.query_params
    assert at.toggle(key="_sb_teaching").value is True


def open_app(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_link_model_of_another_dataset_opens_its_dataset_or_is_named_as_such() -> None:
    """A moons model under ?dataset=digits (or under no dataset) was called "not in this Atlas"."""
    at = open_app({"dataset": "digits", "primary": MOONS_AT, "comparison": MOONS_ERM})
    assert toasts(at) == ["The link names the dataset digits, but its models are models of moons: moons is shown, "
                          "with them."]
    assert (at.query_params["dataset"], at.query_params["primary"]) == ("moons", MOONS_AT)
    assert at.query_params["comparison"] == MOONS_ERM
    at = open_app({"primary": MOONS_AT})
    assert not toasts(at), "no dataset named: nothing the link said is overruled"
    assert (at.query_params["dataset"], at.query_params["primary"]) == ("moons", MOONS_AT)
    # One model of each: the link's dataset stays, and the other dataset's model is named with its dataset.
    at = open_app({"dataset": "digits", "primary": MOONS_AT, "comparison": DIGITS_ERM})
    assert toasts(at) == [f"The link names the model {MOONS_AT}, which is a model of moons, not of digits: the default "
                          "digits model is shown instead. To see it, pick moons under Dataset in the sidebar, then "
                          "the model."]
    assert at.query_params["dataset"] == "digits" and at.query_params["comparison"] == DIGITS_ERM
    at = open_app({"dataset": "digits", "primary": "no-such-run"})
    assert "which is not in this Atlas for digits" in toasts(at)[0]


def test_a_refused_link_value_is_named_on_a_page_that_stops() -> None:
    """The toasts came after the page, and after its st.stop() every st call raised the stop again: with the upload
    still to come, ?geo_path=bogus was dropped without a word."""
    at = open_page("geometry", {"lab_mode": "Upload your own", "geo_path": "bogus"})
    assert toasts(at) == ["The link sets Attack path (geo\\_path) to “bogus”, which this page does not offer: it shows "
                          "“PGD (no random start)” instead."]
    assert at.selectbox(key="geo_path").value == "pgd", "the controls are drawn while the upload is awaited"
