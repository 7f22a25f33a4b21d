"""The app shell under Streamlit's AppTest: it opens on the shipped models without an exception."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_hub_lists_the_shipped_digits_models() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Model hub"
    table = at.dataframe[0].value
    assert {"digits-smallcnn-erm", "digits-smallcnn-pgd-at"} <= {i.removeprefix("shipped-") for i in table["id"]}
    assert (table["dataset"] == "digits").all()


def test_dataset_switch_changes_the_table() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="_sidebar_dataset").select("moons").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["dataset"]) == {"moons"} and len(table) == 2
    at.selectbox(key="_sidebar_dataset").select("circles").run()
    assert at.info and "No models for **circles**" in at.info[0].value
