"""The SQLite run registry: CRUD, read-only shipped runs, concurrent writers, dead-process reconciliation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import RegistryError
from core.store import Registry

WRITER = """
import sys
from core.store import Registry
reg = Registry(sys.argv[1])
run_id = sys.argv[2]
reg.create_run(run_id, name=run_id, dataset="digits", arch="smallcnn", method="erm", config={})
for epoch in range(1, 101):
    reg.add_epoch(run_id, epoch, {"loss": 1.0 / epoch})
"""


def make_run(reg: Registry, run_id: str = "r1", **kw) -> dict:
    return reg.create_run(run_id, name=run_id, dataset="digits", arch="smallcnn", method="erm",
                          config={"lr": 0.1}, **kw)


def test_create_get_update_list(atlas_home: Path) -> None:
    reg = Registry()
    assert reg.path == atlas_home / "atlas.db"
    make_run(reg)
    reg.update_run("r1", status="completed", final_metrics={"clean_acc": 0.9})
    run = reg.get_run("r1")
    assert run["status"] == "completed" and run["final_metrics"] == {"clean_acc": 0.9}
    assert run["config"] == {"lr": 0.1}
    assert [r["id"] for r in reg.list_runs(dataset="digits")] == ["r1"]
    assert reg.list_runs(dataset="moons") == []


def test_wal_mode_and_busy_timeout() -> None:
    reg = Registry()
    with reg.connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_unknown_run_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="no run with id 'nope'"):
        Registry().get_run("nope")


def test_shipped_runs_are_read_only() -> None:
    reg = Registry()
    make_run(reg, "shipped-x", readonly=True, status="shipped", source="shipped")
    with pytest.raises(RegistryError, match="shipped"):
        reg.delete_run("shipped-x")
    with pytest.raises(RegistryError, match="shipped"):
        reg.rename_run("shipped-x", "new name")
    make_run(reg, "mine")
    reg.rename_run("mine", "renamed")
    assert reg.get_run("mine")["name"] == "renamed"
    reg.delete_run("mine")
    assert reg.find_run("mine") is None


def test_a_rename_that_would_read_as_another_models_name_or_run_too_long_is_refused() -> None:
    """The hub's table drops the dataset in front of names: "SmallCNN · ERM" read exactly as the shipped "digits
    SmallCNN · ERM"; a 300-character name was accepted and filled four lines of the hub."""
    from core.store.registry import MAX_NAME

    reg = Registry()
    reg.create_run("shipped-erm", name="digits SmallCNN · ERM", dataset="digits", arch="smallcnn", method="erm",
                   config={}, readonly=True, status="shipped", source="shipped")
    make_run(reg, "mine")
    for clash in ("SmallCNN · ERM", "digits SmallCNN · ERM", "  SmallCNN · ERM "):
        with pytest.raises(RegistryError, match="already called"):
            reg.rename_run("mine", clash)
    with pytest.raises(RegistryError, match=f"at most {MAX_NAME}"):
        reg.rename_run("mine", "x" * (MAX_NAME + 1))
    reg.rename_run("mine", "x" * MAX_NAME)
    reg.rename_run("mine", "SmallCNN · ERM (mine)")
    assert reg.get_run("mine")["name"] == "SmallCNN · ERM (mine)"
    reg.rename_run("mine", "SmallCNN · ERM (mine)")  # unchanged: no clash with itself
    # What the hub shows is compared on both sides: "digits digits X" reads "digits X" there, not "X".
    make_run(reg, "x-run")
    reg.rename_run("x-run", "digits X")
    reg.rename_run("mine", "digits digits X")
    with pytest.raises(RegistryError, match="already called"):
        reg.rename_run("mine", "X")
    # Another dataset's model may have the name.
    reg.create_run("toy", name="toy", dataset="moons", arch="mlp", method="erm", config={})
    reg.rename_run("toy", "SmallCNN · ERM")
    assert reg.unique_name("digits", "SmallCNN · ERM") == "SmallCNN · ERM (2)"


def test_epochs_roundtrip_and_truncate() -> None:
    reg = Registry()
    make_run(reg)
    for e in (1, 2, 3):
        reg.add_epoch("r1", e, {"loss": float(e)})
    reg.truncate_epochs("r1", 2)
    assert [e["epoch"] for e in reg.epochs("r1")] == [1, 2]
    assert reg.get_run("r1")["epochs_done"] == 2


def test_two_processes_write_at_once(atlas_home: Path, subprocess_env: dict) -> None:
    Registry()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(atlas_home), f"w{i}"], env=subprocess_env)
             for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    reg = Registry()
    for i in range(2):
        assert len(reg.epochs(f"w{i}")) == 100
        assert reg.get_run(f"w{i}")["epochs_done"] == 100


def test_reconcile_marks_dead_process_interrupted() -> None:
    reg = Registry()
    make_run(reg)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    reg.update_run("r1", status="running", pid=dead.pid)
    assert reg.reconcile() == ["r1"]
    assert reg.get_run("r1")["status"] == "interrupted"


def test_claim_refuses_a_second_live_trainer_and_takes_over_a_dead_one() -> None:
    reg = Registry()
    fields = dict(name="r", dataset="digits", arch="smallcnn", method="erm", config={})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert reg.claim_run("r1", sleeper.pid, **fields)["status"] == "running"
        with pytest.raises(RegistryError, match=f"already being trained by process {sleeper.pid}"):
            reg.claim_run("r1", os.getpid(), **fields)
        assert reg.reconcile() == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert reg.claim_run("r1", os.getpid(), **fields)["pid"] == os.getpid()
    reg.update_run("r1", status="completed", pid=None)
    assert reg.claim_run("r1", 12345, **fields)["status"] == "completed"


def test_reused_pid_is_not_mistaken_for_the_trainer() -> None:
    reg = Registry()
    make_run(reg)
    reg.update_run("r1", status="running", pid=os.getpid(), pid_start=1)
    assert reg.reconcile() == ["r1"]


def test_evaluations_roundtrip() -> None:
    reg = Registry()
    make_run(reg)
    reg.add_evaluation("e1", "r1", {"attack": "pgd"}, {"robust_acc": 0.5}, "table.parquet")
    assert reg.get_evaluation("e1")["summary"] == {"robust_acc": 0.5}
    assert [e["id"] for e in reg.evaluations("r1")] == ["e1"]
