"""The sidebar and the URL: the dataset, primary and comparison pickers, what a link asks for, and what a change made
elsewhere (a rename, a deletion) does to an open session."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    return at


def test_hub_defaults_to_pgd_at_next_to_erm() -> None:
    at = open_app()
    assert at.session_state["primary_run"] == "shipped-digits-smallcnn-pgd-at"
    assert at.session_state["comparison_run"] == "shipped-digits-smallcnn-erm"
    assert len(at.get("plotly_chart")) == 1


def test_choosing_a_comparison_model_changes_the_cards() -> None:
    at = open_app()
    at.selectbox(key="_sb_comparison").select("shipped-digits-smallcnn-trades").run()
    assert not at.exception
    assert at.session_state["comparison_run"] == "shipped-digits-smallcnn-trades"
    markdown = " ".join(m.value for m in at.markdown)
    assert "TRADES" in markdown and "· _comparison_" in markdown


def test_no_comparison_model_reads_none_not_the_placeholder() -> None:
    """A selectbox whose value is None shows "Choose an option": "none" must be a real, labelled option."""
    at = open_app()
    at.selectbox(key="_sb_comparison").select("").run()
    assert not at.exception
    box = at.selectbox(key="_sb_comparison")
    assert at.session_state["comparison_run"] is None
    assert box.index == 0 and box.options[0] == "— none —"
    assert "· _comparison_" not in " ".join(m.value for m in at.markdown)


def test_a_run_without_a_final_model_is_not_offered_as_primary_or_comparison(atlas_home: Path) -> None:
    """A cancelled training run is listed in the hub with its status, but picking it in the sidebar made every
    analysis page fail ("has no final checkpoint yet")."""
    Registry(atlas_home).create_run("cancelled-run", name="half-trained", dataset="digits", arch="smallcnn",
                                    method="pgd-at", config={}, status="cancelled")
    at = open_app()
    assert "half-trained" in at.dataframe[0].value["name"].tolist()
    for key in ("_sb_primary", "_sb_comparison"):
        options = at.selectbox(key=key).options
        assert len(options) >= 4 and not any("half-trained" in o for o in options), options


def test_teaching_mode_toggle_hides_the_explanations() -> None:
    at = open_app()
    assert any(e.label == "What am I looking at?" for e in at.expander)
    at.toggle(key="_sb_teaching").set_value(False).run()
    assert not any(e.label == "What am I looking at?" for e in at.expander)


def test_dataset_switch_resets_models_to_that_dataset() -> None:
    at = open_app()
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.session_state["primary_run"] == "shipped-moons-mlp-pgd-at"
    assert at.session_state["comparison_run"] == "shipped-moons-mlp-erm"
    at.selectbox(key="_sb_dataset").select("circles").run()
    assert not at.exception and at.session_state["primary_run"] is None
    assert any("No models for **circles**" in i.value for i in at.info)


def test_each_dataset_keeps_the_models_last_chosen_for_it() -> None:
    at = open_app()
    at.selectbox(key="_sb_primary").select("shipped-digits-smallcnn-trades").run()
    at.selectbox(key="_sb_comparison").select("").run()  # "— none —"
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.session_state["primary_run"] == "shipped-moons-mlp-pgd-at", "another dataset starts at its defaults"
    at.selectbox(key="_sb_primary").select("shipped-moons-mlp-erm").run()
    at.selectbox(key="_sb_dataset").select("digits").run()
    assert not at.exception
    assert at.session_state["primary_run"] == "shipped-digits-smallcnn-trades"
    assert at.session_state["comparison_run"] is None, "'no comparison' is remembered too"
    assert at.selectbox(key="_sb_primary").value == "shipped-digits-smallcnn-trades"
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.session_state["primary_run"] == "shipped-moons-mlp-erm"
    # A dataset without two models has no comparison, which is no choice of the user's: it is not kept as one.
    at.selectbox(key="_sb_dataset").select("circles").run()
    assert at.session_state["comparison_run"] is None
    assert at.session_state["_models_by_dataset"]["circles"] == ("auto", "auto")


def test_pickers_say_what_a_model_is_when_its_name_does_not() -> None:
    """A typed name such as "lecture-pgd2" hid the method and ε in every picker."""
    from dashboard.cache import run_labels

    runs = [{"id": "a", "name": "lecture-pgd2", "method": "pgd-at", "eps": 0.1},
            {"id": "b", "name": "digits SmallCNN · PGD-AT ε=0.1", "method": "pgd-at", "eps": 0.1},
            {"id": "c", "name": "baseline", "method": "erm", "eps": 0.1},
            {"id": "d", "name": "twin", "method": "trades", "eps": 0.2},
            {"id": "e", "name": "twin", "method": "trades", "eps": 0.2},
            {"id": "f", "name": "thermal", "method": "erm", "eps": 0.1},
            {"id": "g", "name": "my dale-kl-x", "method": "dale", "eps": 0.1}]
    assert run_labels(runs) == {"a": "lecture-pgd2 · PGD-AT ε=0.1", "b": "digits SmallCNN · PGD-AT ε=0.1",
                                "c": "baseline · ERM", "d": "twin · TRADES ε=0.2 · d", "e": "twin · TRADES ε=0.2 · e",
                                "f": "thermal · ERM", "g": "my dale-kl-x · DALE ε=0.1"}, "whole words only"


def test_pickers_mark_a_model_that_ended_at_chance_level() -> None:
    """The hub said "at chance" but the sidebar offered such a model like any other."""
    from dashboard.cache import run_labels

    runs = [{"id": "a", "name": "lr10", "method": "erm", "eps": None, "final_metrics": {"at_chance": True}},
            {"id": "b", "name": "fine", "method": "erm", "eps": None, "final_metrics": {"clean_acc": 0.97}},
            {"id": "c", "name": "running", "method": "erm", "eps": None, "final_metrics": None}]
    assert run_labels(runs) == {"a": "lr10 · ERM · at chance", "b": "fine · ERM", "c": "running · ERM"}


def test_the_url_keeps_the_chosen_models_across_a_reload() -> None:
    """A browser reload reset Primary to PGD-AT: the selections now live in the URL as well."""
    at = open_app()
    assert at.query_params["dataset"] == "digits" and at.query_params["comparison"] == "shipped-digits-smallcnn-erm"
    at.selectbox(key="_sb_primary").set_value("shipped-digits-smallcnn-trades").run()
    assert at.query_params["primary"] == "shipped-digits-smallcnn-trades"

    reloaded = AppTest.from_file(APP, default_timeout=120)  # a new session with that URL
    reloaded.query_params.update(dataset="digits", primary="shipped-digits-smallcnn-trades", comparison="none")
    reloaded.run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.session_state["primary_run"] == "shipped-digits-smallcnn-trades"
    assert reloaded.session_state["comparison_run"] is None, "'none' is the user's explicit no comparison"
    assert reloaded.selectbox(key="_sb_primary").value == "shipped-digits-smallcnn-trades"

    bad = AppTest.from_file(APP, default_timeout=120)
    bad.query_params.update(dataset="no-such-data", primary="no-such-run")
    bad.run()
    assert not bad.exception, bad.exception
    assert bad.session_state["dataset"] == "digits" and bad.session_state["primary_run"] == \
        "shipped-digits-smallcnn-pgd-at", "unknown values in the URL fall back to the defaults"
    model, dataset = [t.value for t in bad.toast]
    assert model.startswith("The link names the model no-such-run, which is not in this Atlas for digits"), \
        "a model in a link that is not here (deleted) is named, not swapped silently"
    assert dataset.startswith("The link names the dataset “no-such-data”, which this Atlas does not have") and \
        dataset.endswith("digits is shown instead."), "nor is a dataset it does not have"
    assert not reloaded.toast, "models that are here are taken without a word"

    no_dataset = AppTest.from_file(APP, default_timeout=120)
    no_dataset.query_params.update(primary="shipped-digits-smallcnn-trades")
    no_dataset.run()
    assert no_dataset.session_state["primary_run"] == "shipped-digits-smallcnn-trades", "the default dataset's"


def test_a_selected_model_deleted_elsewhere_is_announced_not_dropped_silently(atlas_home: Path) -> None:
    """A stale tab: its selected row's model was deleted from another tab, so the table (keyed by its ids) lost the
    selection, and a Rename pressed there did nothing without a word."""
    at = open_app()
    at.session_state["hub_selected"] = ("deleted-run-id", "my **old** model")
    at.run()
    warnings = [w.value for w in at.warning]
    assert any("my \\*\\*old\\*\\* model" in w and "no longer in the Atlas" in w for w in warnings), warnings
    at.run()  # said once
    assert not any("no longer in the Atlas" in w.value for w in at.warning)
    # A selected model that is still there is not announced.
    shipped = Registry().list_runs()[0]
    at.session_state["hub_selected"] = (shipped["id"], shipped["name"])
    at.run()
    assert not any("no longer in the Atlas" in w.value for w in at.warning)
    # Nor one of another dataset: switching to moons with a digits model selected is no deletion.
    at.session_state["hub_selected"] = ("shipped-digits-smallcnn-erm", "digits SmallCNN · ERM")
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert not any("no longer in the Atlas" in w.value for w in at.warning)


def test_text_from_a_link_cannot_put_its_own_markdown_in_a_message() -> None:
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params.update(dataset="[Log in here](https://example.com)", primary="**x**")
    at.run()
    assert not at.exception
    toasts = [t.value for t in at.toast]
    assert any("\\[Log in here\\](https\\://example.com)" in t for t in toasts), toasts
    assert any("\\*\\*x\\*\\*" in t for t in toasts), toasts


def test_a_link_with_the_same_model_as_primary_and_comparison_says_so() -> None:
    erm = "shipped-digits-smallcnn-erm"
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["primary"] = at.query_params["comparison"] = erm
    at.run()
    assert not at.exception
    assert at.session_state["primary_run"] == erm != at.session_state["comparison_run"]
    (toast,) = [t.value for t in at.toast]
    assert toast.startswith("The link names digits SmallCNN · ERM as both the primary and the comparison model: the "
                            "comparison is digits SmallCNN"), toast


def test_a_picker_the_browser_clears_keeps_the_models() -> None:
    """After a model was renamed, or a new one appeared, the browser sent "no value" for the sidebar's pickers;
    Streamlit read that as the first option, so the primary became the newest run and the comparison none, without
    a word (seen under a Robustness page left open while another tab trained and renamed models)."""
    at = open_app()
    before = at.session_state["primary_run"], at.session_state["comparison_run"]
    assert at.selectbox(key="_sb_primary").options[0] != before[0], "the first option is another model"
    at.selectbox(key="_sb_primary").set_value(None)
    at.selectbox(key="_sb_comparison").set_value(None)
    at.run()
    assert not at.exception
    assert (at.session_state["primary_run"], at.session_state["comparison_run"]) == before
    assert at.selectbox(key="_sb_primary").value == before[0]
    assert at.selectbox(key="_sb_comparison").value == before[1]
    at.selectbox(key="_sb_comparison").select("").run()  # the user's own "— none —" is still taken
    assert at.session_state["comparison_run"] is None


def test_teaching_mode_off_survives_a_reload() -> None:
    """A teacher switched the explanations off for a lecture; a reload (or the link sent to students) brought them
    back on, while the models came back as chosen."""
    at = open_app()
    assert "teaching" not in at.query_params, "on is the default: the URL says nothing"
    at.toggle(key="_sb_teaching").set_value(False).run()
    assert at.query_params["teaching"] == "off"
    reloaded = AppTest.from_file(APP, default_timeout=90)
    reloaded.query_params.update(dict(at.query_params))
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.toggle(key="_sb_teaching").value is False
    assert not any(e.label == "What am I looking at?" for e in reloaded.expander)
    reloaded.toggle(key="_sb_teaching").set_value(True).run()
    assert "teaching" not in reloaded.query_params
    assert any(e.label == "What am I looking at?" for e in reloaded.expander)
