"""What the CLI says where a tester found it unclear: a --checkpoint that is a pickle or no checkpoint at all, help
for every subcommand and argument, the `jobs list` table, deleting a run that is still training, and the re-import
hint of the example export script (a terminal's command, not the hub's sidebar).

Most cases call ``core.cli.parser.main`` in this process (real files in tmp_path, the real registry in the per-test
ATLAS_HOME); the export script runs as a real process, as a user runs it."""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.parser import build_parser
from core.errors import CheckpointError
from core.jobs import create_job, update_job
from core.jobs.reuse import train_run_id
from core.models import build_model, save_checkpoint
from core.store import Registry
from core.store.imports import CONVERT_HINT, import_checkpoint, weights_file_problem
from tests.core.test_cli_import import call_main

ROOT = Path(__file__).resolve().parents[2]
META = {"name": "my cnn", "dataset": "digits", "method": "erm", "norm": "linf", "eps": 0.1}


def error_line(err: str, command: str) -> str:
    """The one error line of ``python -m core COMMAND``, without its prefix."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = f"python -m core {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


# 1. --checkpoint that is no checkpoint -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_eval_refuses_a_pickle_by_its_name_as_runs_import_does_and_says_how_to_convert(
        suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`eval --checkpoint model.pt` said "model.pt.safetensors are missing" although model.pt is right there."""
    model = tmp_path / f"model{suffix}"
    model.write_bytes(pickle.dumps({"conv.weight": [0.0] * 8}))
    code, out, err = call_main(["eval", "--checkpoint", str(model)], capsys)
    assert code == 2 and out == "", err
    said = error_line(err, "eval")
    assert said.startswith(f"{model} is a pickle/zip (torch.save) file"), said
    assert "refusing to load it" in said and said.endswith(CONVERT_HINT), said
    assert f"{model}.safetensors" not in said
    # `runs import` gives the very same words for the same file, from the same function.
    code, out, err = call_main(["runs", "import", str(model)], capsys)
    assert code == 2 and out == "", err
    assert error_line(err, "runs") == said == weights_file_problem(model)
    assert [r for r in Registry().list_runs() if r["source"] == "imported"] == []


def test_a_pickle_named_safetensors_gets_the_same_conversion_hint_in_eval_runs_import_and_the_hub(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A torch.save file renamed .safetensors is refused by its first bytes; all three say how to convert it."""
    weights = save_checkpoint(build_model("smallcnn", seed=0), META, tmp_path / "mine")
    weights.write_bytes(pickle.dumps({"conv.weight": [0.0] * 64}))
    code, _, err = call_main(["eval", "--checkpoint", str(weights)], capsys)
    assert code == 2
    assert error_line(err, "eval") == (f"{weights} is a pickle/zip (torch.save) file, not safetensors; refusing to "
                                       f"load it; {CONVERT_HINT}")
    code, _, err = call_main(["runs", "import", str(weights)], capsys)
    assert code == 2 and error_line(err, "runs").endswith(f"refusing to load it; {CONVERT_HINT}"), err
    with pytest.raises(CheckpointError, match="refusing to load it; to convert it") as hub:
        import_checkpoint(Registry(), weights.read_bytes(), weights.with_suffix(".json").read_bytes())
    assert str(hub.value).endswith(CONVERT_HINT)


def test_eval_names_a_file_that_is_not_safetensors_instead_of_a_missing_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    code, out, err = call_main(["eval", "--checkpoint", str(notes)], capsys)
    assert code == 2 and out == "", err
    said = error_line(err, "eval")
    assert said == (f"{notes} is not a checkpoint: checkpoints are NAME.safetensors (the weights) with NAME.json "
                    "(their metadata: format, arch, arch_kwargs, sha256, dataset) beside it")
    code, _, err = call_main(["eval", "--checkpoint", str(tmp_path / "gone.txt")], capsys)
    assert code == 2
    assert error_line(err, "eval") == (f"no checkpoint at {tmp_path / 'gone.txt'}: neither {tmp_path / 'gone.txt'} "
                                       f"nor {tmp_path / 'gone.txt.safetensors'} exists")


def test_eval_still_takes_a_checkpoint_by_its_name_with_or_without_suffix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_checkpoint(build_model("smallcnn", seed=0), META, tmp_path / "mine")
    for given in (weights, weights.with_suffix(""), weights.with_suffix(".json")):
        code, out, err = call_main(["eval", "--checkpoint", str(given), "--n", "4", "--steps", "1", "--json",
                                    "--device", "cpu"], capsys)
        assert code == 0, err
        assert json.loads(out)["n"] == 4


# 2. help everywhere ------------------------------------------------------------------------------------------

def _missing_help(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not helps.get(name):
                    missing.append(f"subcommand `{' '.join([*path, name])}`")
                missing += _missing_help(child, [*path, name])
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"`{' '.join(path)}` argument {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_subcommand_and_argument_has_a_help_line() -> None:
    assert _missing_help(build_parser(), []) == []


def test_runs_help_describes_rename_and_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call_main(["runs", "--help"], capsys)
    assert code == 0
    (line,) = [row for row in out.splitlines() if row.strip().startswith("rename")]
    assert line.split("rename", 1)[1].strip(), out
    code, out, _ = call_main(["runs", "rename", "--help"], capsys)
    assert code == 0
    rows = {row.split()[0]: row for row in out.splitlines() if row.startswith("  ") and row.split()}
    assert len(rows["run_id"].split()) > 1 and len(rows["name"].split()) > 1, out


# 3. jobs list --------------------------------------------------------------------------------------------------

def test_jobs_list_is_a_table_with_a_header_the_status_once_and_the_progress(
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = Registry()
    args = {"dataset": "digits", "method": "erm", "epochs": 3}
    cancelled = create_job(registry, "train", args)
    update_job(registry, cancelled, status="cancelled", progress=0.174, message="cancelled",
               run_id=train_run_id(args))
    failed = create_job(registry, "eval", {"run_id": "x"})
    update_job(registry, failed, status="failed", progress=0.5, message="failed", error="no run with id 'x'\nmore")
    code, out, err = call_main(["jobs", "list"], capsys)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["id", "kind", "status", "progress", "eta", "run", "detail"]
    (row,) = [r for r in rows if r.startswith(cancelled)]
    assert row.split().count("cancelled") == 1 and "17.4%" in row and train_run_id(args) in row, out
    (row,) = [r for r in rows if r.startswith(failed)]
    assert row.split().count("failed") == 1 and row.endswith("no run with id 'x'"), out
    # The columns line up under the header.
    assert {r.index("%") for r in rows} == {header.index("progress") + len("progress") - 1}, out


def test_jobs_list_without_jobs_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call_main(["jobs", "list"], capsys)
    assert code == 0 and out.startswith("no jobs"), out


# 4. deleting a run that is still training ------------------------------------------------------------------------

@pytest.fixture
def live_process() -> subprocess.Popen:
    """A real process that stays alive, to be the trainer the registry records."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


FIELDS = {"name": "busy", "dataset": "digits", "arch": "smallcnn", "method": "erm", "config": {"epochs": 3}}


def test_deleting_a_run_trained_from_the_terminal_says_how_to_stop_it(
        live_process: subprocess.Popen, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a job: `jobs cancel` cannot stop it, so the message names Ctrl-C and the pid, not "cancel it first"."""
    registry = Registry()
    registry.claim_run("cli-run", live_process.pid, **FIELDS)
    code, out, err = call_main(["runs", "delete", "cli-run"], capsys)
    assert code == 2 and out == "", err
    said = error_line(err, "runs")
    assert said == (f"run cli-run is still being trained by process {live_process.pid}, not a job (`python -m core "
                    "train` in a terminal); stop it first: Ctrl-C in the terminal that trains it, or kill "
                    f"{live_process.pid} (it keeps its last finished epoch), then delete the run")
    assert registry.find_run("cli-run") is not None


def test_deleting_a_run_a_job_trains_names_the_job_to_cancel(
        live_process: subprocess.Popen, capsys: pytest.CaptureFixture[str]) -> None:
    registry = Registry()
    args = {"dataset": "digits", "method": "erm", "epochs": 3}
    run_id = train_run_id(args)
    job_id = create_job(registry, "train", args)
    update_job(registry, job_id, status="running", pid=live_process.pid, run_id=run_id)
    registry.claim_run(run_id, live_process.pid, **FIELDS)
    code, _, err = call_main(["runs", "delete", run_id], capsys)
    assert code == 2
    assert error_line(err, "runs") == (f"run {run_id} is still training in job {job_id} (pid {live_process.pid}); "
                                       "cancel it first: its Cancel button on the Train page, or python -m core "
                                       f"jobs cancel {job_id} (it stops after its current batch), then delete the "
                                       "run")
    assert registry.find_run(run_id) is not None


# 5. the re-import hint fits where it is shown -----------------------------------------------------------------

def test_export_script_run_twice_names_the_cli_command_not_the_sidebar(tmp_path: Path,
                                                                         subprocess_env: dict[str, str]) -> None:
    script = ROOT / "examples" / "plugins" / "export_weights.py"
    cmd = [sys.executable, str(script), "--import-now", "--steps", "5", "--out", str(tmp_path / "tiny")]
    first = subprocess.run(cmd, env=subprocess_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split("imported as run ", 1)[1].split()[0]
    again = subprocess.run(cmd, env=subprocess_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert again.stderr.strip().endswith(f"delete that run first: python -m core runs delete {run_id}"), again.stderr
    assert "sidebar" not in again.stderr


def test_the_hub_keeps_its_sidebar_wording(tmp_path: Path) -> None:
    weights = save_checkpoint(build_model("smallcnn", seed=0), META, tmp_path / "mine")
    blobs = weights.read_bytes(), weights.with_suffix(".json").read_bytes()
    run = import_checkpoint(Registry(), *blobs, measure=False)
    hint = "pick dataset digits in the sidebar and delete that model here first"
    with pytest.raises(CheckpointError, match=f"run {run['id']}.*{hint}"):
        import_checkpoint(Registry(), *blobs, measure=False)
