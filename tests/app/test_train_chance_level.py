"""A run that ended at chance level (lr = 10 on digits: 10 % clean) said nothing on its job card, and its model card
in the hub read like any other model's, a comparison model as good as the next. The run and its job are written
straight into the registry here (tests/core/test_training_chance.py trains one for real)."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.jobs import create_job, train_run_id, update_job
from core.store import Registry
from core.training import TrainConfig
from tests.app.test_job_reuse import open_train
from tests.app.test_train_job_cards import card, texts

WARNING = ("training ended at chance level: clean accuracy 10.0 % on 450 test points, where always answering the "
           "most common class scores 10.2 % (10 classes). The model has learned nothing usable, and its robust "
           "accuracy says nothing about robustness. Its training loss reached 5.49e+09 in epoch 1 (a uniform guess "
           "scores 2.30): the steps were too large. Train again with a smaller learning rate (this run's was 10; "
           "try 0.05).")
FINAL = {"clean_acc": 0.1, "robust_acc": 0.1, "n": 450, "attack": "pgd-20", "eps": 0.1, "norm": "linf",
         "at_chance": True, "warning": WARNING}


def completed_at_chance(registry: Registry) -> tuple[str, dict]:
    """A finished job whose run ended at chance level: its id, and its run's registry row."""
    args = TrainConfig(dataset="digits", method="pgd-at", eps=0.1, lr=10.0, epochs=3, batch_size=32).to_dict()
    job_id = create_job(registry, "train", args)
    run_id = train_run_id(args)
    registry.create_run(run_id, name="lr10", dataset="digits", arch=args["arch"], method="pgd-at", norm="linf",
                        eps=0.1, config=args, status="completed", final_metrics=FINAL)
    registry.update_run(run_id, epochs_done=3, finished_at=time.time())
    update_job(registry, job_id, status="completed", progress=1.0, run_id=run_id, started_at=time.time(),
               finished_at=time.time())
    return job_id, registry.get_run(run_id)


def test_the_job_card_of_a_run_that_ended_at_chance_says_so_and_what_to_change(atlas_home: Path) -> None:
    job_id, _ = completed_at_chance(Registry(atlas_home))
    at = open_train()
    job_card = card(at, job_id)
    assert texts(job_card)[1].startswith("Final: clean **10.0 %** · robust **10.0 %**")
    assert [w.value for w in job_card.warning] == ["T" + WARNING[1:]]


def show_card(run: dict) -> None:
    from dashboard.components.cards import model_card

    model_card(run, "comparison")


def test_the_model_card_of_a_run_that_ended_at_chance_warns_against_comparing_with_it(atlas_home: Path) -> None:
    _, run = completed_at_chance(Registry(atlas_home))
    at = AppTest.from_function(show_card, args=(run,)).run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "**Ended at chance level**: it has learned nothing usable, so comparing with it says nothing."]
    assert [c.value for c in at.caption][0] == "T" + WARNING[1:]

    healthy = {**run, "final_metrics": {k: v for k, v in FINAL.items() if k not in ("at_chance", "warning")}}
    at = AppTest.from_function(show_card, args=(healthy,)).run()
    assert not at.exception and not at.warning


def test_the_hub_table_marks_a_run_that_ended_at_chance(atlas_home: Path) -> None:
    completed_at_chance(Registry(atlas_home))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"),
                           default_timeout=300).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    status = dict(zip(table["name"], table["status"]))
    assert status.pop("lr10") == "at chance" and set(status.values()) == {"shipped"}, status
