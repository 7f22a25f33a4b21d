"""Bring your own model: a plugin module registers an architecture, its weights import like any checkpoint; a bad
plugin (import error, clashing name, nothing registered) gets a clear message and leaves the registry as it was."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.cli.parser import main as cli_main
from core.data import load_dataset
from core.errors import CheckpointError, ConfigError
from core.models import ARCHS, build_model, load_checkpoint, load_plugins, plugins, save_checkpoint
from core.models.plugins import parse_plugin_spec, unload_plugins
from core.models.small import SmallCNN
from core.store import Registry
from core.store.imports import import_checkpoint
from core.training import TrainConfig, train
from core.training.preflight import fitting_archs

ROOT = Path(__file__).resolve().parents[2]

TINYNET = '''
import torch
from torch import nn

from core.models import Normalize, register_arch, require_int

with open(__file__ + ".runs", "a") as runs:  # counts how often the module body runs
    runs.write("ran\\n")


@register_arch("test_tinynet")
class TinyNet(nn.Module):
    feature_layers = ("body",)

    def __init__(self, hidden: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        self.normalize = Normalize(0.5, 0.25)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, require_int("hidden", hidden)), nn.Tanh())
        self.head = nn.Linear(hidden, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
'''

# Registers one architecture, then fails on line 8: the first registration must be undone.
BROKEN = '''from torch import nn
from core.models import register_arch

@register_arch("test_before")
class Before(nn.Module):
    pass

ratio = 1 / 0
'''

# Registers one architecture, then takes "smallcnn" (decorator on line 8).
CLASH = '''from torch import nn
from core.models import register_arch

@register_arch("test_first")
class First(nn.Module):
    pass

@register_arch("smallcnn")
class MySmallCNN(nn.Module):
    pass
'''

# Registers one architecture with the decorator, then takes "smallcnn" by writing into ARCHS, past the decorator.
HACK = '''from torch import nn
from core.models import ARCHS, register_arch

@register_arch("test_first")
class First(nn.Module):
    pass

class Mine(nn.Module):
    pass

ARCHS["smallcnn"] = Mine
'''

# Architectures that cannot train on digits (1×8×8, 10 classes), each for its own reason.
MISFITS = '''import torch
from torch import nn

from core.models import register_arch


@register_arch("test_mnist_only")
class MnistOnly(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.head = nn.Linear(28 * 28, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


@register_arch("test_three_logits")
class ThreeLogits(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.head = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


@register_arch("test_gpu_only")
class GpuOnly(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        raise RuntimeError("test_gpu_only needs a GPU\\nand says more on a second line")
'''


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No plugin loaded and ATLAS_PLUGINS unset while a test runs; ARCHS and the plugin records restored after."""
    monkeypatch.delenv("ATLAS_PLUGINS", raising=False)
    archs, reports = dict(ARCHS), dict(plugins._REPORTS)
    level = logging.getLogger(plugins.__name__).level
    plugins._REPORTS.clear()
    yield
    for report in plugins._REPORTS.values():
        if report.module:
            sys.modules.pop(report.module, None)
    ARCHS.clear()
    ARCHS.update(archs)
    plugins._REPORTS.clear()
    plugins._REPORTS.update(reports)
    logging.getLogger(plugins.__name__).setLevel(level)


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def digits_x(n: int = 32) -> torch.Tensor:
    return load_dataset("digits", "test").x[:n]


def tinynet_checkpoint(folder: Path) -> tuple[torch.nn.Module, Path]:
    model = build_model("test_tinynet", seed=0, hidden=8)
    meta = {"name": "my tiny net", "dataset": "digits", "method": "erm", "metrics": {"clean_acc": 0.5}}
    return model, save_checkpoint(model, meta, folder / "ckpt" / "tinynet")


def import_files(weights: Path) -> dict:
    return import_checkpoint(Registry(), weights.read_bytes(), weights.with_suffix(".json").read_bytes())


def train_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``python -m core train ARGS`` in this process (exit status, stdout, stderr), putting back the signal handlers
    and root logger handlers the command sets."""
    root, signals = logging.getLogger(), (signal.SIGTERM, signal.SIGINT)
    handlers, saved = root.handlers[:], {sig: signal.getsignal(sig) for sig in signals}
    capsys.readouterr()
    try:
        code = cli_main(["train", "--dataset", "digits", "--method", "erm", "--epochs", "1", "--batch-size", "64",
                         "--eval-n", "32", "--eval-steps", "2", *args])
    finally:
        root.handlers = handlers
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    out, err = capsys.readouterr()
    return code, out, err


def assert_nothing_stored(reg: Registry) -> None:
    assert reg.list_runs() == []
    assert not (reg.home / "imports").exists() or list((reg.home / "imports").iterdir()) == []
    assert [p.name for p in reg.home.iterdir() if p.name.startswith(".import-")] == []


def test_a_plugin_architecture_imports_like_any_checkpoint(tmp_path: Path) -> None:
    path = write(tmp_path, "tinynet.py", TINYNET)
    (report,) = load_plugins(str(path))
    assert report.ok and report.archs == ("test_tinynet",) and report.warning is None
    assert report.source == str(path.resolve()) and report.module in sys.modules
    assert load_plugins(f"{path}:{path}") == [report]  # idempotent: the module body ran once
    assert Path(f"{path}.runs").read_text().count("ran") == 1

    model, weights = tinynet_checkpoint(tmp_path)
    run = import_files(weights)
    listed = {r["id"]: r for r in Registry().list_runs(dataset="digits")}
    assert listed[run["id"]]["arch"] == "test_tinynet" and listed[run["id"]]["source"] == "imported"
    assert listed[run["id"]]["name"] == "my tiny net"
    loaded, meta = load_checkpoint(listed[run["id"]]["checkpoint_path"])
    assert meta["arch"] == "test_tinynet" and loaded.arch_kwargs == {"hidden": 8}
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(digits_x()), model(digits_x()))


def test_the_cli_and_a_fresh_interpreter_load_plugins_from_the_environment(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    good, broken = write(tmp_path, "tinynet.py", TINYNET), write(tmp_path, "broken.py", BROKEN)
    env = {**subprocess_env, "ATLAS_PLUGINS": f"{good}:{broken}"}
    out = subprocess.run([sys.executable, "-m", "core", "plugins"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert f"ok       {good} → test_tinynet" in out.stdout
    assert f"FAILED   {broken}" in out.stdout
    assert f"ZeroDivisionError: division by zero at {broken.resolve()}, line 8" in out.stdout
    assert out.stderr == ""  # the listing says it all: no duplicate warnings

    # The weights are written here; a fresh interpreter that only has ATLAS_PLUGINS imports them, as the hub does.
    load_plugins(str(good))
    model, weights = tinynet_checkpoint(tmp_path)
    probe = ("import sys; from core.store import Registry; from core.store.imports import import_checkpoint; "
             "from pathlib import Path; w = Path(sys.argv[1]); "
             "print(import_checkpoint(Registry(), w.read_bytes(), w.with_suffix('.json').read_bytes())['id'])")
    env["ATLAS_PLUGINS"] = str(good)
    out = subprocess.run([sys.executable, "-c", probe, str(weights)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    run = Registry().get_run(out.stdout.strip())
    assert run["arch"] == "test_tinynet" and run["dataset"] == "digits"
    loaded, _ = load_checkpoint(run["checkpoint_path"])
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(digits_x()), model(digits_x()))


def test_the_plugins_command_reports_json_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    good, empty = write(tmp_path, "tinynet.py", TINYNET), write(tmp_path, "empty.py", "LIMIT = 3\n")
    monkeypatch.setenv("ATLAS_PLUGINS", f"{good},{empty}")
    assert cli_main(["plugins", "--json"]) == 0  # a plugin that registers nothing warns but does not fail
    rows = {Path(r["entry"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tinynet.py"]["ok"] and rows["tinynet.py"]["archs"] == ["test_tinynet"]
    assert rows["empty.py"]["ok"] and "registers no architecture" in rows["empty.py"]["warning"]
    monkeypatch.setenv("ATLAS_PLUGINS", f"{good},{empty},{tmp_path / 'missing.py'}")
    assert cli_main(["plugins", "--json"]) == 1
    missing = json.loads(capsys.readouterr().out)[-1]
    assert not missing["ok"] and "does not exist" in missing["error"] and missing["archs"] == []


FAILURES = {
    # case: (file name or None for a dotted name, source, entry, expected text in the error)
    "runtime-error": ("broken.py", BROKEN, None, "failed to import: ZeroDivisionError: division by zero at {path}, "
                      "line 8"),
    "syntax-error": ("syntax.py", "from torch import nn\ndef f(:\n    pass\n", None,
                     "failed to import: SyntaxError: invalid syntax at {path}, line 2"),
    "missing-import": ("needs.py", BROKEN.replace("ratio = 1 / 0", "import atlas_no_such_module"), None,
                       "ModuleNotFoundError: No module named 'atlas_no_such_module' at {path}, line 8"),
    "not-a-class": ("fn.py", "from core.models import register_arch\n\n@register_arch('test_before')\n"
                    "def build():\n    return None\n", None, "not a torch.nn.Module class"),
    "missing-file": (None, "", "{tmp}/nowhere.py", "file {tmp}/nowhere.py does not exist"),
    "unknown-module": (None, "", "atlas_no_such_pkg.plugin", "no module named 'atlas_no_such_pkg.plugin' on sys.path"),
    "not-a-name": (None, "", "my-plugin", "neither a path to a .py file nor a dotted module name"),
}


@pytest.mark.parametrize("case", list(FAILURES), ids=str)
def test_a_plugin_that_fails_says_why_and_registers_nothing(case: str, tmp_path: Path) -> None:
    name, source, entry, expected = FAILURES[case]
    path = write(tmp_path, name, source) if name else None
    entry = str(path) if path else entry.format(tmp=tmp_path)
    before = dict(ARCHS)
    (report,) = load_plugins(entry)
    assert not report.ok and report.archs == () and report.module is None
    assert expected.format(path=path.resolve() if path else "", tmp=tmp_path.resolve()) in report.error
    assert report.error.startswith(f"plugin {entry}")
    assert ARCHS == before
    assert not [m for m in sys.modules if m.startswith("atlas_plugin_")]
    # An architecture that is missing because its plugin failed says so.
    with pytest.raises(ConfigError, match="unknown architecture 'test_before'") as info:
        build_model("test_before")
    assert report.error in str(info.value)
    assert load_plugins(entry) == [report]  # a failure is recorded, not retried on every call


def test_a_clashing_plugin_is_refused_whole(tmp_path: Path) -> None:
    before = dict(ARCHS)
    clash = write(tmp_path, "clash.py", CLASH)
    (report,) = load_plugins(str(clash))
    assert not report.ok
    assert (f"plugin {clash} registers architecture 'smallcnn', which is already taken by "
            f"core.models.small.SmallCNN (at {clash.resolve()}, line 8)") in report.error
    assert ARCHS == before and "test_first" not in ARCHS  # also the name it registered before the clash

    # A clash between two plugins names the plugin that holds the name.
    first = write(tmp_path, "tinynet.py", TINYNET)
    second = write(tmp_path, "tinynet_again.py", TINYNET)
    ok, refused = load_plugins(f"{first},{second}")
    assert ok.ok and not refused.ok
    assert f"'test_tinynet', which is already taken by {first}'s TinyNet" in refused.error
    assert ARCHS["test_tinynet"].__module__ == ok.module


def test_a_plugin_that_takes_a_name_by_writing_into_archs_is_refused_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    before = dict(ARCHS)
    hack = write(tmp_path, "hack.py", HACK)
    monkeypatch.setenv("ATLAS_PLUGINS", str(hack))
    assert cli_main(["plugins", "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert not row["ok"] and row["archs"] == [] and row["module"] is None
    assert (f"plugin {hack} replaces architecture 'smallcnn', which is already taken by core.models.small.SmallCNN, "
            "by changing core.models.ARCHS directly") in row["error"]
    assert "Nothing from this plugin was registered" in row["error"]
    assert ARCHS == before and ARCHS["smallcnn"] is SmallCNN
    assert "test_first" not in ARCHS  # registered through the decorator before the takeover: rolled back too
    assert not [m for m in sys.modules if m.startswith("atlas_plugin_")]
    # The shipped models still build and load.
    assert isinstance(build_model("smallcnn", seed=0, in_channels=1, image_size=8), SmallCNN)
    model, meta = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-erm.safetensors")
    assert meta["arch"] == "smallcnn" and isinstance(model, SmallCNN)


def test_a_plugin_architecture_trains_on_the_data_it_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ATLAS_PLUGINS", str(write(tmp_path, "tinynet.py", TINYNET)))
    (report,) = load_plugins()
    assert report.ok
    assert fitting_archs("digits") == ("smallcnn", "test_tinynet")  # what the Train form can offer
    assert "test_tinynet" not in fitting_archs("moons")
    code, out, err = train_cli(["--arch", "test_tinynet", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and result["epochs_done"] == 1
    run = Registry().get_run(result["run_id"])
    assert run["arch"] == "test_tinynet" and run["dataset"] == "digits" and run["status"] == "completed"
    model, meta = load_checkpoint(run["checkpoint_path"])
    assert meta["arch"] == "test_tinynet" and model.arch_kwargs == {"num_classes": 10}


MISFIT_CASES = {
    "forward-fails": ("test_mnist_only", "does not fit digits inputs of shape (1, 8, 8): its forward pass fails with "
                      "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x64 and 784x10)"),
    "wrong-logits": ("test_three_logits", "does not fit digits inputs of shape (1, 8, 8): on a batch of 2 it returns "
                     "shape (2, 3), not logits of shape (2, 10)"),
    "build-fails": ("test_gpu_only", "cannot be built for digits inputs of shape (1, 8, 8): RuntimeError: "
                    "test_gpu_only needs a GPU"),
}


@pytest.mark.parametrize("case", list(MISFIT_CASES), ids=str)
def test_a_plugin_architecture_that_does_not_fit_is_refused_with_its_failure(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (report,) = load_plugins(str(write(tmp_path, "misfits.py", MISFITS)))
    assert report.ok
    arch, expected = MISFIT_CASES[case]
    assert arch not in fitting_archs("digits")
    code, out, err = train_cli(["--arch", arch], capsys)
    assert code == 2 and out == ""
    (line,) = err.splitlines()  # one line, also when the exception's text has several
    assert line.startswith(f"python -m core train: error: architecture {arch!r} ") and expected in line, line
    assert Registry().list_runs() == []


def test_a_dotted_module_plugin_and_the_spec_syntax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_plugin_spec(" a.py:pkg.mod, b/c.py,,a.py ") == ["a.py", "pkg.mod", "b/c.py"]
    package = tmp_path / "atlas_test_pkg"
    package.mkdir()
    write(package, "__init__.py", TINYNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    (report,) = load_plugins("atlas_test_pkg")
    assert report.ok and report.archs == ("test_tinynet",) and report.module == "atlas_test_pkg"
    assert report.source == str(package / "__init__.py")
    assert build_model("test_tinynet", seed=0).num_classes == 10


def test_relative_paths_reach_job_processes_as_absolute_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "tinynet.py", TINYNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATLAS_PLUGINS", "tinynet.py")
    (report,) = load_plugins()
    assert report.ok and report.entry == "tinynet.py"
    # Jobs inherit the environment but start in the repository root.
    assert os.environ["ATLAS_PLUGINS"] == str((tmp_path / "tinynet.py").resolve())
    assert load_plugins() == [report]


def test_the_dashboard_script_reads_relative_paths_from_where_it_was_started(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """scripts/dashboard.sh moves into the repository before starting Streamlit: a tester's
    `ATLAS_PLUGINS=plugins/twoconv.py bash …/scripts/dashboard.sh` was looked for under the repository. The script
    makes relative file entries (and a relative ATLAS_HOME) absolute from where it was started first; dotted module
    names and absolute paths stay as they are."""
    (tmp_path / "plugins").mkdir()
    write(tmp_path / "plugins", "tinynet.py", TINYNET)
    env = {**subprocess_env, "ATLAS_HOME": "home", "ATLAS_PLUGINS": "plugins/tinynet.py,json:/abs/other.py"}
    shown = f'source "{ROOT}/scripts/caller-paths.sh"; cd "{ROOT}"; echo "$ATLAS_HOME"; echo "$ATLAS_PLUGINS"'
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", shown], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{tmp_path}/home", f"{tmp_path}/plugins/tinynet.py:json:/abs/other.py"]
    # What the dashboard then does from the repository: the plugin is found.
    listing = f'source "{ROOT}/scripts/caller-paths.sh"; cd "{ROOT}"; "{sys.executable}" -m core plugins'
    env["ATLAS_PLUGINS"] = "plugins/tinynet.py"
    out = subprocess.run(["bash", "-c", listing], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "→ test_tinynet" in out.stdout


def test_weights_of_an_architecture_whose_plugin_is_not_loaded_are_refused(tmp_path: Path) -> None:
    load_plugins(str(write(tmp_path, "tinynet.py", TINYNET)))
    _, weights = tinynet_checkpoint(tmp_path)
    unload_plugins()
    assert "test_tinynet" not in ARCHS
    reg = Registry()
    with pytest.raises(CheckpointError, match="unknown architecture 'test_tinynet'.*ATLAS_PLUGINS, which is not set"):
        import_files(weights)
    assert_nothing_stored(reg)
    # With the plugin failing, the refusal says why the architecture is missing.
    (report,) = load_plugins(str(write(tmp_path, "broken.py", BROKEN)))
    with pytest.raises(CheckpointError, match="unknown architecture 'test_tinynet'") as info:
        import_files(weights)
    assert report.error in str(info.value)
    assert_nothing_stored(reg)


def test_the_shipped_example_plugin_exports_weights_the_hub_imports(tmp_path: Path) -> None:
    example = ROOT / "examples" / "plugins"
    (report,) = load_plugins(str(example / "tiny_mlp.py"))
    assert report.ok and report.archs == ("example_tiny_mlp",)
    spec = importlib.util.spec_from_file_location("atlas_example_export", example / "export_weights.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script's main() does: a tiny network trains fastest on one thread
    try:
        weights = script.export(tmp_path / "example", steps=150)
    finally:
        torch.set_num_threads(threads)
    run = import_files(weights)
    assert run["arch"] == "example_tiny_mlp" and run["method"] == "erm" and run["eps"] == 0.1
    assert run["final_metrics"]["clean_acc"] > 0.85
    assert 0 <= run["final_metrics"]["robust_acc"] < run["final_metrics"]["clean_acc"]
    model, _ = load_checkpoint(run["checkpoint_path"])
    test = load_dataset("digits", "test")
    with torch.no_grad():
        clean_acc = (model(test.x).argmax(dim=1) == test.y).float().mean().item()
    assert clean_acc == pytest.approx(run["final_metrics"]["clean_acc"])


def test_training_refuses_a_plugin_model_whose_forward_raises_value_error(tmp_path: Path) -> None:
    """The example MLP raises ValueError on inputs of the wrong size: ``train`` called directly (no preflight) let
    it escape raw instead of the one-line "does not fit", before anything is registered either way."""
    (report,) = load_plugins(str(ROOT / "examples" / "plugins" / "tiny_mlp.py"))
    assert report.ok, report
    config = TrainConfig(dataset="moons", arch="example_tiny_mlp", method="erm", epochs=1, eval_n=8)
    with pytest.raises(ConfigError, match="architecture 'example_tiny_mlp' does not fit moons inputs"):
        train(config, registry=Registry(tmp_path))
    assert Registry(tmp_path).list_runs(dataset="moons") == []
