"""The Model hub's checkpoint import under AppTest: the upload limit is stated before anyone tries, a file the
uploader refused (too big: it never reaches the script) is explained instead of blamed on the user, and malformed
or valid checkpoints keep their behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
SHIPPED = ROOT / "assets" / "models" / "digits-smallcnn-erm"
CLI = "python -m core runs import NAME.safetensors"


@pytest.fixture
def max_upload_mb() -> int:
    """The server's upload limit as the app's .streamlit/config.toml sets it, set explicitly (and restored) so a
    test that changes it cannot leak into another."""
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 50)
    yield 50
    config.set_option("server.maxUploadSize", before)


def open_hub() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    assert at.title[0].value == "Model hub"
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="hub_upload").set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception
    return at


def press_import(at: AppTest) -> list[str]:
    at.button(key="hub_import").click().run()
    assert not at.exception
    return [e.value for e in at.error]


def shipped() -> tuple[bytes, bytes]:
    return SHIPPED.with_suffix(".safetensors").read_bytes(), SHIPPED.with_suffix(".json").read_bytes()


def test_the_uploader_states_the_limit_and_the_alternative_up_front(max_upload_mb: int) -> None:
    at = open_hub()
    uploader = at.file_uploader(key="hub_upload")
    assert f"≤ {max_upload_mb} MB each" in uploader.label
    assert uploader.proto.max_upload_size_mb == max_upload_mb  # the browser refuses exactly what the label says
    assert f"over {max_upload_mb} MB is refused" in uploader.help and CLI in uploader.help
    intro = " ".join(m.value for m in at.markdown)
    assert f"Limit {max_upload_mb} MB per file" in intro and CLI in intro
    button = at.button(key="hub_import")
    assert button.disabled and f"each ≤ {max_upload_mb} MB" in button.help


def test_a_weights_file_refused_for_its_size_is_explained_not_blamed_on_the_user(max_upload_mb: int) -> None:
    """The tester's case: a 250 MB .safetensors file was refused by the uploader (a bare red "!"), only the .json
    arrived, and Import said "upload exactly one .safetensors and one .json (got 0 and 1)"."""
    _, meta = shipped()
    at = upload(open_hub(), ("big.json", meta))
    errors = press_import(at)
    assert len(errors) == 1, errors
    text = errors[0]
    assert "got 0 and 1" not in text and "upload exactly one" not in text
    assert "weights file (NAME.safetensors) did not arrive; only big.json did" in text
    assert f"larger than the {max_upload_mb} MB upload limit" in text and "red “!”" in text
    assert CLI in text and "cannot be imported in the dashboard" in text
    assert not [r for r in Registry().list_runs() if r["source"] == "imported"]


def test_a_missing_json_file_says_which_file_and_the_limit(max_upload_mb: int) -> None:
    weights, _ = shipped()
    errors = press_import(upload(open_hub(), ("model.safetensors", weights)))
    assert len(errors) == 1, errors
    assert "metadata file (NAME.json) did not arrive; only model.safetensors did" in errors[0]
    assert f"the limit is {max_upload_mb} MB per file" in errors[0] and "got 1 and 0" not in errors[0]


def test_two_weights_files_are_refused_naming_them() -> None:
    weights, meta = shipped()
    errors = press_import(upload(open_hub(), ("a.safetensors", weights), ("b.safetensors", weights),
                                 ("a.json", meta)))
    assert errors == ["Refused: 2 .safetensors files (a.safetensors, b.safetensors); import one checkpoint at a "
                      "time: remove the extra ones from the list above (their ×)."]


def test_a_lower_server_limit_is_shown_with_how_to_raise_it(max_upload_mb: int) -> None:
    config.set_option("server.maxUploadSize", 10)
    at = open_hub()
    uploader = at.file_uploader(key="hub_upload")
    assert "≤ 10 MB each" in uploader.label and uploader.proto.max_upload_size_mb == 10
    _, meta = shipped()
    errors = press_import(upload(at, ("big.json", meta)))
    assert len(errors) == 1, errors
    assert "larger than the 10 MB upload limit" in errors[0]
    assert "`--server.maxUploadSize 50`" in errors[0] and CLI in errors[0]


def test_a_file_of_another_kind_is_still_refused_by_name() -> None:
    """A pickle is refused in the words of `runs import` and `eval`, with how to convert it."""
    from core.store.imports import CONVERT_HINT

    _, meta = shipped()
    errors = press_import(upload(open_hub(), ("model.pt", b"\x80\x04junk"), ("model.json", meta)))
    assert len(errors) == 1 and errors[0].startswith("Refused: model.pt is a pickle/zip (torch.save) file by its name")
    assert CONVERT_HINT in errors[0]
    errors = press_import(upload(open_hub(), ("notes.txt", b"hello"), ("model.json", meta)))
    assert len(errors) == 1 and errors[0].startswith("Refused: notes.txt is neither a .safetensors")


def test_a_malformed_checkpoint_is_refused_with_the_loaders_reason_and_nothing_is_stored() -> None:
    weights, meta = shipped()
    errors = press_import(upload(open_hub(), ("m.safetensors", weights[: len(weights) // 2]), ("m.json", meta)))
    assert len(errors) == 1 and errors[0].startswith("Refused: "), errors
    assert "truncated" in errors[0] or "size" in errors[0]
    assert not [r for r in Registry().list_runs() if r["source"] == "imported"]


def test_a_valid_checkpoint_is_imported() -> None:
    weights, meta = shipped()
    at = upload(open_hub(), ("erm.safetensors", weights), ("erm.json", meta))
    at.text_input(key="hub_import_name").input("my upload").run()
    assert press_import(at) == []
    assert any("Imported **my upload**" in s.value for s in at.success)
    # The shipped model's own files: the two rows are said to be one model.
    assert any("Its weights are those of **digits SmallCNN · ERM** (shipped), byte for byte" in s.value
               for s in at.success), [s.value for s in at.success]
    assert [r["name"] for r in Registry().list_runs() if r["source"] == "imported"] == ["my upload"]



def test_a_name_with_markdown_in_it_is_shown_as_typed_not_rendered() -> None:
    """A model called "**big** [x](y)" was announced in bold with a link; its characters are escaped now."""
    from dashboard.components.labels import md

    name = "**big** [x](y) :red[z] $a$"
    weights, meta = shipped()
    at = upload(open_hub(), ("erm.safetensors", weights), ("erm.json", meta))
    at.text_input(key="hub_import_name").input(name).run()
    assert press_import(at) == []
    assert any(f"Imported **{md(name)}**" in s.value for s in at.success), [s.value for s in at.success]
    assert [r["name"] for r in Registry().list_runs() if r["source"] == "imported"] == [name]


@pytest.mark.parametrize("text", ["**big** [x](y)", ":red[z] $a$ `c`", "a_b*c\\d", "plain name · ε=0.1"])
def test_md_escapes_every_markdown_character_and_keeps_the_text(text: str) -> None:
    import re

    from dashboard.components.labels import md

    escaped = md(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == text
    assert not re.search(r"(?<!\\)[*\[\]$`:]", escaped.replace("\\\\", "")), escaped


def test_the_hub_tables_norm_and_eps_cell_says_dash_for_what_is_not_known() -> None:
    """An import without a norm or ε: its column values are NaN (truthy), and the cell read "None"."""
    import pandas as pd

    from dashboard.components.cards import threat_text

    table = pd.DataFrame({"norm": ["linf", None, "l2"], "ε": [0.1, None, 0.5]})
    assert [threat_text(n, e) for n, e in zip(table["norm"], table["ε"])] == ["ℓ∞ 0.1", "—", "ℓ2 0.5"]
