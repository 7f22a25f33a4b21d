"""Every page under AppTest on the shipped models: renders, widgets change what is shown, bad input starts nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.jobs import cancel_job, create_job, list_jobs, update_job
from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
PAGES = {"hub": "Model hub", "train": "Train a model", "learn": "Learn"}


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page,title", PAGES.items(), ids=list(PAGES))
def test_page_renders_without_exception(page: str, title: str) -> None:
    at = open_app()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    assert at.title[0].value == title


def test_train_form_refuses_invalid_values_and_starts_nothing(atlas_home: Path) -> None:
    at = open_app()
    at.switch_page("../pages/train.py").run()
    at.number_input(key="train_eps_digits_linf").set_value(0.0)
    start(at)
    assert any("Not started" in e.value and "needs ε > 0" in e.value for e in at.error)
    assert list_jobs(Registry(atlas_home)) == []


def open_train(method: str | None = None) -> AppTest:
    at = open_app()
    at.switch_page("../pages/train.py").run()
    if method:
        at.selectbox(key="train_method").select(method).run()
    assert not at.exception, at.exception
    return at


def start(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    return at


def test_train_eps_is_bounded_by_the_input_scale_and_an_empty_or_nan_eps_is_refused(atlas_home: Path) -> None:
    at = open_train()
    eps = at.number_input(key="train_eps_digits_linf")
    assert eps.value == 0.1 and eps.label == "ε (ℓ∞, image scale 0–1)" and "Between 0 and 1" in eps.help
    eps.set_value(1.5)
    start(at)
    assert [e.value for e in at.error] == ["Not started: ε is 1.5; allowed: 0 to 1"]
    at.selectbox(key="train_norm").select("l2").run()
    assert "Between 0 and 8:" in at.number_input(key="train_eps_digits_l2").help, "√64: the diameter of [0,1]^64"
    for typed in (None, float("nan")):
        at.number_input(key="train_eps_digits_l2").set_value(typed)
        start(at)
        assert [e.value for e in at.error] == ["Not started: ε is empty or not a number: type a value between 0 "
                                               "and 8"], typed
    assert list_jobs(Registry(atlas_home)) == []


def test_train_offers_the_dale_fields_and_refuses_them_by_their_labels(atlas_home: Path) -> None:
    at = open_train()
    assert not any(n.key == "train_rho" for n in at.number_input), "no DALE fields for PGD-AT"
    at = open_train("dale")
    labels = {n.key: n.label for n in at.number_input}
    assert labels["train_rho"] == "ρ (clean-loss bound)" and labels["train_nu0"] == "ν₀ (initial ν)"
    assert at.selectbox(key="train_noise").options == ["Laplacian", "Gaussian"]
    assert at.selectbox(key="train_noise").value == "laplacian", "readable labels, the stored values unchanged"
    at.number_input(key="train_rho").set_value(0.0)
    start(at)
    assert [e.value for e in at.error] == ["Not started: ρ (clean-loss bound) must be > 0, got 0.0"]
    at.number_input(key="train_rho").set_value(0.1)
    at.number_input(key="train_scale").set_value(-1.0)
    start(at)
    assert [e.value for e in at.error] == ["Not started: Langevin noise scale c must be ≥ 0, got -1.0"]
    assert list_jobs(Registry(atlas_home)) == []


def test_train_beta_field_names_its_method() -> None:
    at = open_train("trades")
    assert [(n.label, n.value) for n in at.number_input if n.key.endswith("_beta")] == [("TRADES β", 3.0)]
    at.selectbox(key="train_method").select("mart").run()
    assert [(n.label, n.value) for n in at.number_input if n.key.endswith("_beta")] == [("MART β", 5.0)]
    at.selectbox(key="train_method").select("pgd-at").run()
    assert not [n for n in at.number_input if n.key.endswith("_beta")]


def test_the_same_run_twice_is_refused_and_job_cards_tell_jobs_apart(atlas_home: Path) -> None:
    at = open_train()
    at.number_input(key="train_epochs").set_value(50)
    start(at)
    jobs = list_jobs(Registry(atlas_home))
    try:
        assert len(jobs) == 1 and any(f"Queued job `{jobs[0]['id']}`" in s.value for s in at.success)
        assert any(f"job `{jobs[0]['id']}` · submitted " in c.value for c in at.caption), "the card names its job"
        at.text_input(key="train_name").set_value("another name")
        start(at)
        assert any(f"Not started: job {jobs[0]['id']} is already" in e.value and "same run" in e.value
                   for e in at.error), [e.value for e in at.error]
        assert len(list_jobs(Registry(atlas_home))) == 1
    finally:
        for job in list_jobs(Registry(atlas_home), active_only=True):
            cancel_job(Registry(atlas_home), job["id"])


def test_train_form_offers_only_fitting_architectures() -> None:
    at = open_app()
    at.switch_page("../pages/train.py").run()
    assert at.selectbox(key="train_arch").options == ["SmallCNN"] and at.selectbox(key="train_arch").value == "smallcnn"
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.selectbox(key="train_arch").options == ["MLP"]


def test_train_refuses_out_of_range_fields_by_name_and_range(atlas_home: Path) -> None:
    """The browser only reddens a field outside its min/max and submits nothing new: the app checks the ranges."""
    at = open_train()
    assert "PGD-AT (Madry et al.)" in at.selectbox(key="train_method").options
    assert at.selectbox(key="train_method").value == "pgd-at"
    assert at.selectbox(key="train_norm").options == ["ℓ∞", "ℓ2"]
    at.number_input(key="train_lr").set_value(0.0)
    at.number_input(key="train_batch").set_value(100000)
    start(at)
    assert [e.value for e in at.error] == ["Not started: Learning rate is 0; allowed: 0.00001 to 10; Batch size is "
                                           "100000; allowed: 1 to 4096"]
    at.number_input(key="train_lr").set_value(0.05)
    at.number_input(key="train_batch").set_value(32)
    at.number_input(key="train_epochs").set_value(0)
    start(at)
    assert [e.value for e in at.error] == ["Not started: Epochs is 0; allowed: 1 to 500"]
    assert list_jobs(Registry(atlas_home)) == []


def test_train_form_lists_every_problem_at_once(atlas_home: Path) -> None:
    """Epochs −3 with ε empty said only "Epochs is -3"; ε's problem came with the next submit."""
    at = open_train("dale")
    at.number_input(key="train_epochs").set_value(-3)
    at.number_input(key="train_eps_digits_linf").set_value(None)
    at.number_input(key="train_rho").set_value(0.0)
    start(at)
    assert [e.value for e in at.error] == ["Not started: ε is empty or not a number: type a value between 0 and 1; "
                                           "ρ (clean-loss bound) must be > 0, got 0.0; Epochs is -3; allowed: 1 to "
                                           "500"]
    assert list_jobs(Registry(atlas_home)) == []


def test_train_form_names_eps_zero_for_an_adversarial_method_with_the_other_problems(atlas_home: Path) -> None:
    """ε = 0 with PGD-AT (a rule of two fields) came only after every field was in range."""
    at = open_train("pgd-at")
    at.number_input(key="train_eps_digits_linf").set_value(0.0)
    at.number_input(key="train_epochs").set_value(-3)
    start(at)
    assert [e.value for e in at.error] == ["Not started: PGD-AT needs ε > 0 (ε = 0 is standard training, ERM); "
                                           "Epochs is -3; allowed: 1 to 500"]
    assert list_jobs(Registry(atlas_home)) == []


def test_patch_data_trains_only_with_the_per_patch_threat_model(atlas_home: Path) -> None:
    """The Trade-offs launcher once queued an ℓ∞ DALE run on patches (not in [0, 1]; ε meant nothing there)."""
    from core.errors import ConfigError
    from core.training import TrainConfig
    from core.training.preflight import preflight

    with pytest.raises(ConfigError, match="patches is patch data .* train it with norm 'l2patch'"):
        preflight(TrainConfig(dataset="patches", arch="patchnet", method="dale", norm="linf", eps=0.25))
    preflight(TrainConfig(dataset="patches", arch="patchnet", method="pgd-at", norm="l2patch", eps=0.25))


def test_a_completed_job_shows_a_full_progress_bar_across_its_card(atlas_home: Path) -> None:
    """The bar sat in the title's column (5/6 of the card), so a completed job's bar stopped short of the edge."""
    registry = Registry(atlas_home)
    args = {"dataset": "digits", "arch": "smallcnn", "method": "pgd-at", "norm": "linf", "eps": 0.1, "epochs": 1,
            "name": "finished"}
    job_id = create_job(registry, "train", args)
    # Its last report before the end said 80%: a completed job is full whatever it last reported.
    update_job(registry, job_id, status="completed", progress=0.8, message="completed")
    at = open_train()
    bars = at.get("progress")
    assert [b.proto.value for b in bars] == [100]
    assert not any(column.get("progress") for column in at.columns), "a bar inside a column is narrower than the card"
    assert any("completed" in m.value and "finished" in m.value for m in at.markdown)


def test_job_titles_are_readable() -> None:
    from dashboard.components.jobs import _title

    args = {"dataset": "digits", "arch": "smallcnn", "method": "pgd-at", "norm": "linf", "eps": 0.1, "epochs": 1,
            "class_weighting": "none"}
    assert _title({"kind": "train", "args": args}) == "digits · SmallCNN · PGD-AT (ℓ∞ ε = 0.1, 1 epoch)"
    args.update(epochs=3, class_weighting="adaptive", class_weight_strength=0.5)
    assert _title({"kind": "train", "args": args}).endswith("(ℓ∞ ε = 0.1, 3 epochs, adaptive class weights "
                                                            "(strength 0.5))")
    args.update(class_weighting="fixed", class_weights=[1.0, 2.0], name="mine")
    assert _title({"kind": "train", "args": args}) == "digits · mine (ℓ∞ ε = 0.1, 3 epochs, fixed class weights 1, 2)"
    # Two DALE jobs differing in ρ, or two seeds, looked the same.
    args.update(method="dale", dale_rho=0.05, seed=3, class_weighting="none", class_weights=[], name="")
    assert _title({"kind": "train", "args": args}) == ("digits · SmallCNN · DALE (ℓ∞ ε = 0.1, 3 epochs, ρ = 0.05, "
                                                        "seed 3)")


def test_a_completed_training_job_shows_what_it_produced(atlas_home: Path) -> None:
    """Finished job cards said "completed" and nothing about the model they made."""
    from dashboard.components.jobs import _result

    registry = Registry(atlas_home)
    registry.create_run("done-run", name="done", dataset="digits", arch="smallcnn", method="pgd-at", norm="linf",
                        eps=0.1, config={}, source="trained")
    registry.update_run("done-run", status="completed", final_metrics={"clean_acc": 0.987, "robust_acc": 0.8123})
    job = {"kind": "train", "status": "completed", "run_id": "done-run"}
    assert _result(job) == ("Final: clean **98.7 %** · robust **81.2 %** (PGD at ε = 0.1)", None)
    # A run measured by the headline protocol says how: the same attack and points as every model in the hub.
    registry.update_run("done-run", final_metrics={"clean_acc": 0.987, "robust_acc": 0.8123, "n": 450,
                                                   "attack": "pgd-20"})
    assert _result(job) == ("Final: clean **98.7 %** · robust **81.2 %** (PGD-20 at ε = 0.1 on 450 test points, as "
                            "every model in the hub)", None)
    assert _result({**job, "status": "running"}) == (None, None) == _result({**job, "run_id": None})


def test_the_hub_renders_without_importing_torch(subprocess_env: dict) -> None:
    """The cold-start budget depends on it: torch (~1.5 s) is imported in the background after the first page."""
    import subprocess
    import sys

    probe = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
             f"at = AppTest.from_file({APP!r}, default_timeout=90).run()\n"
             "assert not at.exception, at.exception\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_training_a_dataset_without_its_files_is_refused_before_queueing(atlas_home: Path) -> None:
    at = open_app()
    at.selectbox(key="_sb_dataset").select("mnist").run()
    at.switch_page("../pages/train.py").run()
    assert any("needs its standard files" in w.value for w in at.warning)
    start(at)
    assert any("Not started" in e.value and "python -m core data download mnist" in e.value for e in at.error)
    assert list_jobs(Registry(atlas_home)) == []


def test_every_hub_table_column_fits_beside_the_sidebar_on_a_1280_px_screen() -> None:
    """At 1400 px the status and created columns were cut off; ~800 px is what a 1280 px screen leaves the table."""
    import json

    at = open_app()
    table = at.dataframe[0]
    config = json.loads(table.proto.columns)
    order = list(table.proto.column_order)
    assert "status" in order and "created" in order
    widths = [config[column]["width"] for column in order]
    assert all(isinstance(w, int) for w in widths), dict(zip(order, widths))
    assert sum(widths) + 35 <= 800, dict(zip(order, widths))
    # The most for the name: at 210 px two runs trained here read "SmallCNN · PGD-AT ε=0.1 · 1 ep · see".
    assert config["name"]["width"] == max(widths) >= 250, dict(zip(order, widths))
    assert set(table.value["threat"]) == {"ℓ∞ 0.1"}
    assert "SmallCNN · ERM" in set(table.value["name"]), "the dataset every row shares is left out of the names"
    assert not any(n.startswith("digits ") for n in table.value["name"])


def test_train_page_sets_class_weighting_and_refuses_what_does_not_fit(atlas_home: Path) -> None:
    """Class weighting was only on the Trade-offs launcher; the Train page offers it with the same checks."""
    at = open_train("erm")
    assert at.selectbox(key="train_weighting").options == ["None", "Adaptive", "Fixed"]
    assert at.text_input(key="train_weights").disabled and at.number_input(key="train_strength").disabled
    at.selectbox(key="train_weighting").select("adaptive").run()
    assert not at.number_input(key="train_strength").disabled
    start(at)
    assert [e.value for e in at.error] == ["Not started: adaptive class weights follow per-class robustness under the "
                                           "training attack; ERM has no attack: use fixed weights or an adversarial "
                                           "method"]
    at.selectbox(key="train_weighting").select("fixed").run()
    at.text_input(key="train_weights").set_value("1, 2")
    start(at)
    assert [e.value for e in at.error] == ["Not started: Fixed weights: 2 values but the dataset has 10 classes; "
                                           "type one per class"]
    assert list_jobs(Registry(atlas_home)) == []
    at.text_input(key="train_weights").set_value("1,1,1,1,1,1,1,1,3,1")
    at.number_input(key="train_epochs").set_value(1)
    start(at)
    jobs = list_jobs(Registry(atlas_home))
    try:
        assert len(jobs) == 1 and not at.error, [e.value for e in at.error]
        args = jobs[0]["args"]
        assert (args["method"], args["class_weighting"]) == ("erm", "fixed")
        assert args["class_weights"] == [1, 1, 1, 1, 1, 1, 1, 1, 3, 1]
    finally:
        for job in list_jobs(Registry(atlas_home), active_only=True):
            cancel_job(Registry(atlas_home), job["id"])


@pytest.mark.parametrize("top", [2.3026, 0.0412, 11.0, 1.0, 0.999, 0.3])
def test_the_live_loss_axis_has_round_ticks_on_the_accuracy_grid(top: float) -> None:
    """The loss axis ticked 2.40, 2.05, 1.70, 1.35, 0.995, 0.645 between the accuracy grid's lines."""
    import math

    from dashboard.components.charts import training_curves

    epochs = [{"epoch": 1, "loss": top, "clean_acc": 0.1}, {"epoch": 2, "loss": top / 3, "clean_acc": 0.5},
              {"epoch": 3, "loss": float("nan"), "clean_acc": 0.6}]
    axis = training_curves(epochs, "t").layout.yaxis2
    step, high = axis.dtick, axis.range[1]
    assert axis.tick0 == 0 and axis.range[0] == 0 and math.isclose(high, 5.1 * step), "5 steps, like 0 % … 100 %"
    assert 5 * step >= top > 5 * step / 2.5 - 1e-12, (top, step)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), step


@pytest.mark.parametrize("page", ["train", "playground", "theory", "geometry", "tradeoffs"])
def test_no_number_field_rounds_what_was_typed(page: str) -> None:
    """A fixed-decimals format drew 1e-12 as "0.0000" while the job used 1e-12 (an attack step size that looked
    like "automatic", a learning rate that trained nothing): fields show what the script gets."""
    import re

    at = open_app()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    fixed = [(n.label, n.proto.format) for n in at.number_input
             if n.proto.format and re.fullmatch(r"%\.\d+f", n.proto.format)
             and isinstance(n.value, float)]
    assert fixed == []


def test_the_style_sheet_gives_each_kind_of_panel_row_its_minimum_width() -> None:
    """layout.panels names a row by a key prefix; assets/style.css turns that prefix into the minimum width. A
    renamed prefix or a changed width on one side only would leave rows that never wrap (or always do)."""
    import re

    from dashboard.components.layout import KINDS

    css = (ROOT / "assets" / "style.css").read_text()
    for prefix, px in KINDS.values():
        rule = re.search(r'\[class\*="st-key-' + re.escape(prefix) + r'"\] > div \{ flex: 1 1 (\d+)px;', css)
        assert rule, f"no rule for {prefix} in style.css"
        assert int(rule.group(1)) == px


@pytest.mark.parametrize("page", ["attack_lab", "geometry", "latent", "features"])
def test_an_empty_dataset_says_what_would_give_it_a_model(page: str) -> None:
    """"Train one" was the advice for circles on the Attack Lab (which shows images only) and for cifar10, whose
    files are not here (the Train page refuses it until they are)."""
    at = open_app()
    at.selectbox(key="_sb_dataset").select("cifar10").run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    (info,) = [i.value for i in at.info]
    assert "no model yet" in info and "python -m core data download cifar10" in info, info
    if page == "features":  # the hub says it too, beside its import
        at.switch_page("../pages/hub.py").run()
        (info,) = [i.value for i in at.info]
        assert "No models for **cifar10** yet" in info and "python -m core data download cifar10" in info, info
    if page == "attack_lab":
        at.selectbox(key="_sb_dataset").select("circles").run()
        (info,) = [i.value for i in at.info]
        assert info.startswith("The Attack Lab shows images; **circles** has 2-dimensional points"), info


def test_the_code_fingerprint_changes_when_a_file_is_edited_added_or_removed(tmp_path: Path) -> None:
    import os

    from dashboard.code_version import fingerprint

    (tmp_path / "core" / "sub").mkdir(parents=True)
    module = tmp_path / "core" / "sub" / "a.py"
    module.write_text("x = 1\n")
    (tmp_path / "core" / "__pycache__").mkdir()
    (tmp_path / "core" / "notes.txt").write_text("not code")
    first = fingerprint(tmp_path, ("core",))
    assert first[0] == 1
    os.utime(module, ns=(first[1] + 10**9, first[1] + 10**9))  # edited a second later
    edited = fingerprint(tmp_path, ("core",))
    assert edited != first
    (tmp_path / "core" / "b.py").write_text("")
    os.utime(tmp_path / "core" / "b.py", ns=(first[1], first[1]))  # an older file pulled in: the count shows it
    added = fingerprint(tmp_path, ("core",))
    assert added[0] == 2 and added != edited
    module.unlink()
    assert fingerprint(tmp_path, ("core",))[0] == 1


def test_every_page_asks_for_a_restart_once_the_code_on_disk_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A git pull into a running dashboard: new page scripts called old modules and failed without a word why."""
    from dashboard import code_version

    at = open_app()
    assert not [w for w in at.warning if "Restart the dashboard" in w.value]
    monkeypatch.setattr(code_version, "STARTED", (0, 0))  # the server started on other code than is on disk now
    at.run()
    assert [w.value for w in at.warning if "Restart the dashboard" in w.value], [w.value for w in at.warning]
