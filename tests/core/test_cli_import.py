"""``python -m core runs import``: a checkpoint on disk is registered as the hub's Import registers an upload (same
checks, run id, row, files and measurement), with a cap suited to disk instead of the hub's 50 MiB; a refused one
gives one line on stderr, exit code 2, and leaves nothing in the registry.

The accepted imports and one refusal run real ``python -m core`` processes (start-up, plugin loading from
ATLAS_PLUGINS, exit status); the other refusals call ``core.cli.parser.main`` in this process, which saves the 4 s
torch import of a fresh interpreter per case."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.cli.parser import main
from core.errors import CheckpointError
from core.models import build_model, load_checkpoint, plugins, save_checkpoint
from core.store import Registry
from core.store.imports import (CONVERT_HINT, MAX_FILE_IMPORT_BYTES, MAX_IMPORT_BYTES, import_checkpoint,
                                import_checkpoint_file)
from tests.core.test_plugins import TINYNET as PLUGIN_TINYNET

ROOT = Path(__file__).resolve().parents[2]
META = {"name": "my cnn", "dataset": "digits", "method": "erm", "norm": "linf", "eps": 0.1,
        "metrics": {"clean_acc": 0.5, "robust_acc": 0.25}}

# The plugin tests' architecture under a name of its own (the subprocess registers it from ATLAS_PLUGINS).
TINYNET = PLUGIN_TINYNET.replace('"test_tinynet"', '"test_cli_tinynet"')


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """A real ``python -m core ARGS`` process."""
    return subprocess.run([sys.executable, "-m", "core", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def call_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``python -m core ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
    finally:
        root.handlers = saved
    return int(code or 0), out, err


def smallcnn_checkpoint(folder: Path, **meta: object) -> Path:
    """An untrained digits SmallCNN saved by the project's own writer; returns the .safetensors path."""
    return save_checkpoint(build_model("smallcnn", seed=0), {**META, **meta}, folder / "mine")


def imported(reg: Registry) -> list[dict]:
    return [run for run in reg.list_runs() if run["source"] == "imported"]


def assert_nothing_stored(reg: Registry) -> None:
    assert imported(reg) == []
    folder = reg.home / "imports"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert [p.name for p in reg.home.iterdir() if p.name.startswith(".import-")] == []


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_cli_imports_and_measures_a_checkpoint_as_the_hub_does(tmp_path: Path,
                                                                    subprocess_env: dict[str, str]) -> None:
    weights = smallcnn_checkpoint(tmp_path / "ckpt")
    out = run_cli(["runs", "import", str(weights), "--name", "from disk", "--device", "cpu", "--json"],
                  subprocess_env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    run = json.loads(out.stdout)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert run["id"] == f"import-{digest[:12]}"

    (listed,) = imported(Registry())
    assert listed == run
    assert (listed["name"], listed["arch"], listed["dataset"], listed["method"]) == ("from disk", "smallcnn", "digits",
                                                                                      "erm")
    assert listed["status"] == "imported" and listed["eps"] == 0.1 and listed["norm"] == "linf"
    metrics = listed["final_metrics"]
    assert 0.0 <= metrics["clean_acc"] <= 1.0 and 0.0 <= metrics["robust_acc"] <= metrics["clean_acc"]
    assert metrics["attack"] == "pgd-20" and metrics["n"] == 450 and metrics["eps"] == 0.1 and "reported" not in metrics
    assert metrics["reported_clean_acc"] == 0.5  # the .json file's own figure is kept beside the measured one
    assert Path(listed["checkpoint_path"]).read_bytes() == weights.read_bytes()
    loaded, meta = load_checkpoint(listed["checkpoint_path"])
    assert meta["sha256"] == digest and loaded.arch_name == "smallcnn"

    # The hub's bytes route, into another home, gives the same id, row and numbers.
    hub = import_checkpoint(Registry(tmp_path / "hub-home"), weights.read_bytes(),
                            weights.with_suffix(".json").read_bytes(), name="from disk")
    same = ("id", "name", "dataset", "arch", "method", "norm", "eps", "status", "source", "config", "final_metrics")
    assert {k: hub[k] for k in same} == {k: run[k] for k in same}


def test_a_plugin_architecture_imports_through_the_cli(tmp_path: Path, subprocess_env: dict[str, str],
                                                       restore_plugins: None) -> None:
    plugin = tmp_path / "cli_tinynet.py"
    plugin.write_text(textwrap.dedent(TINYNET), encoding="utf-8")
    (report,) = plugins.load_plugins(str(plugin))
    assert report.ok, report.error
    weights = save_checkpoint(build_model("test_cli_tinynet", seed=0, hidden=8),
                              {**META, "name": "tiny from a plugin"}, tmp_path / "ckpt" / "tiny")
    out = run_cli(["runs", "import", str(weights), "--no-measure"], {**subprocess_env, "ATLAS_PLUGINS": str(plugin)})
    assert out.returncode == 0, out.stderr
    assert "imported “tiny from a plugin” as run import-" in out.stdout
    assert "clean 0.500  robust 0.250  (as reported by the .json file; not measured: --no-measure)" in out.stdout
    (run,) = imported(Registry())
    assert run["arch"] == "test_cli_tinynet" and run["dataset"] == "digits"
    assert run["final_metrics"] == {"clean_acc": 0.5, "robust_acc": 0.25, "reported": True}


def test_the_cli_takes_a_file_over_the_hub_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real checkpoint of about 60 MB (an MLP on digits with a wide hidden layer): the hub's bytes route refuses it,
    the CLI registers it. The disk cap itself is checked with a small ``max_bytes``."""
    assert MAX_FILE_IMPORT_BYTES >= 4 * 2**30 > MAX_IMPORT_BYTES
    model = build_model("mlp", seed=0, in_features=64, num_classes=10, hidden=[236_000])
    weights = save_checkpoint(model, {**META, "name": "wide mlp"}, tmp_path / "big")
    size = weights.stat().st_size
    assert size > MAX_IMPORT_BYTES
    reg = Registry()
    with pytest.raises(CheckpointError, match="the limit is 50 MiB"):
        import_checkpoint(reg, weights.read_bytes(), weights.with_suffix(".json").read_bytes())
    with pytest.raises(CheckpointError, match=rf"{weights} is {size / 2**20:.1f} MiB; the limit is 56 MiB"):
        import_checkpoint_file(reg, weights, max_bytes=56 * 2**20)
    assert_nothing_stored(reg)

    code, out, err = call_main(["runs", "import", str(weights), "--no-measure", "--json"], capsys)
    assert code == 0, err
    run = json.loads(out)
    assert run["name"] == "wide mlp" and run["arch"] == "mlp"
    assert Path(run["checkpoint_path"]).stat().st_size == size
    assert [r["id"] for r in imported(Registry())] == [run["id"]]


def test_a_malformed_file_is_refused_in_one_line_and_stores_nothing(tmp_path: Path,
                                                                    subprocess_env: dict[str, str]) -> None:
    weights = smallcnn_checkpoint(tmp_path)
    weights.write_bytes(pickle.dumps({"conv.weight": [0.0] * 64}))
    out = run_cli(["runs", "import", str(weights)], subprocess_env)
    assert out.returncode == 2, out.stderr
    assert one_line(out.stderr) == (f"python -m core runs: error: {weights} is a pickle/zip (torch.save) file, not "
                                    f"safetensors; refusing to load it; {CONVERT_HINT}")
    assert out.stdout == ""
    assert_nothing_stored(Registry())


def _break(case: str, weights: Path) -> list[str]:
    """Spoil the checkpoint at ``weights`` as ``case`` says; return the extra CLI arguments."""
    meta_path = weights.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if case == "missing-weights":
        weights.unlink()
    elif case == "missing-json":
        meta_path.unlink()
    elif case == "malformed-json":
        meta_path.write_text('{"arch": "smallcnn", ')
    elif case == "not-safetensors":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif case == "wrong-shapes":
        meta["arch_kwargs"] = {**meta["arch_kwargs"], "width": 16}
    elif case == "unknown-arch":
        meta["arch"] = "no_such_net"
    elif case == "dataset-mismatch":
        meta["dataset"] = "moons"
    elif case == "unknown-dataset":
        meta["dataset"] = "imagenet"
    elif case == "json-given-as-weights":
        return [str(meta_path)]
    elif case == "other-meta-missing":
        return [str(weights), "--meta", str(weights.with_name("elsewhere.json"))]
    if case in ("wrong-shapes", "unknown-arch", "dataset-mismatch", "unknown-dataset"):
        meta_path.write_text(json.dumps(meta))
    return [str(weights)]


@pytest.mark.parametrize("case,message", [
    ("missing-weights", "the weights file {w} does not exist"),
    ("missing-json", "the metadata file {j} does not exist (give another with --meta PATH.json)"),
    ("other-meta-missing", "the metadata file {d}/elsewhere.json does not exist"),
    ("json-given-as-weights", "{j} is the .json metadata; give the .safetensors weights file"),
    ("malformed-json", "{j} is not valid JSON"),
    ("not-safetensors", "{w} is not safetensors (its header is not JSON"),
    ("truncated", "{w} is truncated: its tensors need"),
    ("wrong-shapes", "{w}: tensor 'body.0.weight' has shape (32, 1, 3, 3) in the file but smallcnn("),
    ("unknown-arch", "{j}: unknown architecture 'no_such_net'"),
    ("dataset-mismatch", "the model does not take moons's inputs (2)"),
    ("unknown-dataset", "the checkpoint names dataset 'imagenet', which the Atlas does not know"),
], ids=str)
def test_refusals_say_why_in_one_line_and_store_nothing(case: str, message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    weights = smallcnn_checkpoint(tmp_path)
    args = _break(case, weights)
    code, out, err = call_main(["runs", "import", *args], capsys)
    assert code == 2 and out == "", err
    expected = message.format(w=weights, j=weights.with_suffix(".json"), d=tmp_path)
    assert one_line(err).startswith(f"python -m core runs: error: {expected}"), err
    assert_nothing_stored(Registry())


def test_reimporting_names_the_run_and_how_to_delete_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = smallcnn_checkpoint(tmp_path)
    code, out, err = call_main(["runs", "import", str(weights), "--no-measure", "--json"], capsys)
    assert code == 0, err
    run_id = json.loads(out)["id"]
    code, _, err = call_main(["runs", "import", str(weights)], capsys)
    assert code == 2
    assert one_line(err).endswith(f"delete that run first: python -m core runs delete {run_id}")
    # `runs delete` removes the imported files too, so the same weights import again.
    code, out, err = call_main(["runs", "delete", run_id], capsys)
    assert code == 0, err
    assert_nothing_stored(Registry())
    code, out, err = call_main(["runs", "import", str(weights), "--no-measure"], capsys)
    assert code == 0 and f"as run {run_id}" in out, err


def test_a_taken_name_is_suffixed_and_the_cli_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--name` that another model of the dataset has: the import goes on as "NAME (2)" (as the hub's does) and the
    output says so, with how to rename it; it once took the other name without a word."""
    first = smallcnn_checkpoint(tmp_path / "a")
    second = save_checkpoint(build_model("smallcnn", seed=1), META, tmp_path / "b" / "mine")
    code, _, err = call_main(["runs", "import", str(first), "--no-measure", "--name", "my MLP"], capsys)
    assert code == 0, err
    code, out, err = call_main(["runs", "import", str(second), "--no-measure", "--name", "my MLP"], capsys)
    assert code == 0, err
    run = next(r for r in imported(Registry()) if r["name"] != "my MLP")
    assert run["name"] == "my MLP (2)"
    assert (f"note: another digits model is already called 'my MLP', so this one is called 'my MLP (2)'; "
            f"`python -m core runs rename {run['id']} NAME`") in out


def test_weights_under_another_suffix_are_judged_by_their_bytes(tmp_path: Path) -> None:
    """`runs import weights.bin --meta m.json` with safetensors inside was taken before the pickle-name check, and
    is still: only a pickle's suffix is refused by name."""
    model = build_model("mlp", seed=0, in_features=64, num_classes=10, hidden=[8])
    weights = save_checkpoint(model, {**META, "name": "bin suffix"}, tmp_path / "m")
    renamed = weights.rename(tmp_path / "weights.bin")
    run = import_checkpoint_file(Registry(), renamed, meta_path=weights.with_suffix(".json"), measure=False)
    assert run["name"] == "bin suffix"
    with pytest.raises(CheckpointError, match="pickle"):
        import_checkpoint_file(Registry(), renamed.rename(tmp_path / "weights.pt"),
                               meta_path=weights.with_suffix(".json"), measure=False)
