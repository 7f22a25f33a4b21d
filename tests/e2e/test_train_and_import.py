"""A user's flows in a real browser: train from the form and see the run in the hub; import and refuse files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import TIMEOUT_MS, assert_healthy, choose, go_to, open_app, options_of, selected, shot

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
JOB_ROWS = "[class*='st-key-job_']"


def test_train_from_the_form_while_a_second_session_watches(server: str, browser, page, artifacts: Path) -> None:
    open_app(page, server)
    go_to(page, "Train", "Train a model")
    page.get_by_label("Epochs").fill("3")
    page.get_by_label("Name (optional)").fill("e2e pgd run")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued job").wait_for(timeout=TIMEOUT_MS)

    other = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    other.console_errors = []
    other.on("console", lambda msg: other.console_errors.append(msg.text) if msg.type == "error" else None)
    open_app(other, server)
    choose(other, "Dataset", "moons")
    go_to(other, "Train", "Train a model")
    other.locator(JOB_ROWS).filter(has_text="e2e pgd run").first.wait_for(timeout=TIMEOUT_MS)

    for watcher in (page, other):
        watcher.locator(JOB_ROWS).filter(has_text="e2e pgd run").filter(
            has_text="completed").first.wait_for(timeout=180_000)
    page.get_by_text("Per-class robust accuracy").first.wait_for(timeout=TIMEOUT_MS)
    shot(page, artifacts, "train-job-completed")
    assert selected(page, "Dataset") == "digits"
    assert selected(other, "Dataset") == "moons"

    go_to(page, "Model hub", "Model hub")
    # A typed name that does not say the method gets it in the pickers.
    assert "e2e pgd run · PGD-AT ε=0.1" in options_of(page, "Primary model")
    # Back on Train, the form shows what was sent, not its defaults (10 epochs beside the job's 3: a second Start
    # would have launched a longer run).
    go_to(page, "Train", "Train a model")
    # Waited for, not read once after a second: under load the form was still being drawn (read "10").
    expect(page.get_by_label("Epochs")).to_have_value("3", timeout=TIMEOUT_MS)
    assert page.get_by_label("Name (optional)").input_value() == "e2e pgd run"
    assert_healthy(page)
    assert_healthy(other)
    other.context.close()


def _upload(page, files: list[Path], name: str | None = None) -> None:
    page.get_by_text("Import a checkpoint").click()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(f) for f in files])
    for f in files:
        page.get_by_text(f.name).first.wait_for(timeout=TIMEOUT_MS)
    if name is not None:
        page.get_by_label("Display name (optional)").fill(name)
        page.get_by_label("Display name (optional)").press("Enter")
        page.wait_for_timeout(500)
    page.get_by_role("button", name="Import", exact=True).click()


def test_import_a_checkpoint(server: str, page, tmp_path: Path, artifacts: Path) -> None:
    src = ROOT / "assets" / "models" / "digits-smallcnn-trades"
    files = []
    for suffix in (".safetensors", ".json"):
        dst = tmp_path / f"mine{suffix}"
        dst.write_bytes(src.with_suffix(suffix).read_bytes())
        files.append(dst)
    open_app(page, server)
    _upload(page, files, name="my imported trades")
    done = page.get_by_test_id("stAlertContentSuccess").filter(has_text="my imported trades")
    done.wait_for(timeout=TIMEOUT_MS)
    # The shipped TRADES model's own files: the hub says the new row is that model.
    assert "Its weights are those of digits SmallCNN · TRADES ε=0.1 (shipped), byte for byte" in done.inner_text()
    shot(page, artifacts, "import-ok")
    assert "my imported trades" in options_of(page, "Primary model")
    assert_healthy(page)


class Boom:
    def __reduce__(self):
        return (open, ("/tmp/atlas-e2e-pwned", "w"))


def test_a_pickle_disguised_as_a_checkpoint_is_refused(server: str, page, tmp_path: Path, artifacts: Path) -> None:
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Boom()))
    meta = tmp_path / "evil.json"
    meta.write_bytes((ROOT / "assets" / "models" / "digits-smallcnn-erm.json").read_bytes())
    open_app(page, server)
    _upload(page, [evil, meta])
    alert = page.get_by_test_id("stAlertContentError").filter(has_text="Refused")
    alert.wait_for(timeout=TIMEOUT_MS)
    assert "pickle" in alert.inner_text()
    shot(page, artifacts, "import-pickle-refused")
    assert not Path("/tmp/atlas-e2e-pwned").exists()
    assert "evil" not in " ".join(options_of(page, "Primary model"))
    assert_healthy(page)


def test_a_file_of_another_kind_is_refused_by_name(server: str, page, tmp_path: Path, artifacts: Path) -> None:
    """The uploader takes any file, so a stray PNG gets our message instead of the widget's bare red "!"."""
    stray = tmp_path / "digit.png"
    stray.write_bytes((ROOT / "assets" / "models" / "digits-smallcnn-erm.json").read_bytes()[:64])
    files = [stray]
    for suffix in (".safetensors", ".json"):
        dst = tmp_path / f"mine{suffix}"
        dst.write_bytes((ROOT / "assets" / "models" / "digits-smallcnn-erm").with_suffix(suffix).read_bytes())
        files.append(dst)
    open_app(page, server)
    _upload(page, files)
    alert = page.get_by_test_id("stAlertContentError").filter(has_text="Refused")
    alert.wait_for(timeout=TIMEOUT_MS)
    assert "digit.png is neither a .safetensors weights file nor a .json metadata file" in alert.inner_text()
    shot(page, artifacts, "import-stray-file-refused")
    assert_healthy(page)


def test_renaming_the_primary_model_keeps_it_primary(server: str, server_home: Path, page, tmp_path: Path) -> None:
    """The browser keeps a picker's value as its label: after the primary model was renamed (here from the CLI's
    side, as another tab would), the next rerun sent the old label and the sidebar switched to the default model
    without a word; the picker also kept showing the old name."""
    from core.store import Registry
    from core.store.imports import import_checkpoint_file

    src = ROOT / "assets" / "models" / "digits-smallcnn-erm.safetensors"
    run = import_checkpoint_file(Registry(server_home), src, name="before rename", measure=False)
    page.goto(f"{server}/?dataset=digits&primary={run['id']}&comparison=shipped-digits-smallcnn-erm",
              wait_until="domcontentloaded")
    page.get_by_role("heading", name="Model hub").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value.startsWith('before'))",
                           timeout=TIMEOUT_MS)
    Registry(server_home).rename_run(run["id"], "after rename")
    page.wait_for_timeout(2500)  # the page's list of runs is cached for 2 s
    page.get_by_text("Teaching mode").click()  # any rerun
    page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value.startsWith('after'))",
                           timeout=TIMEOUT_MS)
    go_to(page, "Attack Lab", "Attack Lab")
    page.wait_for_timeout(1500)
    assert f"primary={run['id']}" in page.url
    assert selected(page, "Primary model").startswith("after rename")
    assert_healthy(page)


def test_a_model_renamed_in_another_tab_leaves_an_open_robustness_page_working(server: str, server_home: Path,
                                                                                page) -> None:
    """The sidebar's pickers sent back a renamed model's old label (no run id); the Robustness page's own "Models"
    picker, holding the same model, must take the rename without an error and show the new name."""
    from core.store import Registry
    from core.store.imports import import_checkpoint_file

    src = ROOT / "assets" / "models" / "digits-smallcnn-pgd-at.safetensors"
    run = import_checkpoint_file(Registry(server_home), src, name="robustness tab model", measure=False)
    # From the root: a deep link's page path made Streamlit's client ask /robustness/_stcore/… (two 404s).
    page.goto(f"{server}/?dataset=digits&primary={run['id']}&comparison=shipped-digits-smallcnn-erm",
              wait_until="domcontentloaded")
    page.get_by_role("heading", name="Model hub").wait_for(timeout=TIMEOUT_MS)
    go_to(page, "Robustness", "Robustness")
    page.get_by_text("robustness tab model").first.wait_for(timeout=300_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    Registry(server_home).rename_run(run["id"], "renamed in another tab")
    page.wait_for_timeout(2500)  # the list of runs is cached for 2 s
    page.get_by_text("Teaching mode").click()  # any rerun
    # The "Models" list's chip takes the new name too (it kept the old one), and the sidebar keeps the pair: the
    # browser cleared its pickers on the rerun, which made the newest run primary and the comparison none.
    models = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Models", exact=True))
    models.get_by_text("renamed in another tab").first.wait_for(timeout=300_000)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=300_000)
    assert selected(page, "Primary model").startswith("renamed in another tab")
    assert selected(page, "Comparison model").startswith("digits SmallCNN · ERM")
    assert f"primary={run['id']}" in page.url
    # No clear button on the pickers (index=None brings one; a cleared primary would be set straight back).
    assert page.locator('[data-testid="stSidebar"] button[aria-label="Clear value"]:visible').count() == 0
    assert_healthy(page)
