"""Bring your own model: plugin modules, named in ``ATLAS_PLUGINS``, that register architectures.

``ATLAS_PLUGINS`` holds entries separated by ``os.pathsep`` (``:`` on Linux and macOS) or commas. Each entry is a
path to a ``.py`` file (relative paths from the current directory; loaded under a unique module name) or a dotted
module name importable from ``sys.path``. A plugin registers its classes with ``core.models.register_arch``; from
then on checkpoints of those architectures load, import and evaluate like any other.

``core.models`` calls :func:`load_plugins` when it is first imported, so the CLI, the dashboard and the job
subprocesses (which inherit the environment, with file entries made absolute) all see the same architectures.
Loading never raises for a bad plugin: each entry gets a :class:`PluginReport` with the architectures it registered
or a message saying what went wrong (an import error with its file and line, a name that is already taken, through
the decorator or by writing into ``ARCHS`` directly, a non-module class). A plugin that fails has everything it
registered removed again (and any entry it replaced put back), so the registry never holds half a plugin.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from core.models.registry import ARCHS, ArchitectureClash, class_path

__all__ = [
    "ENV_VAR",
    "PluginReport",
    "load_plugins",
    "parse_plugin_spec",
    "plugin_reports",
    "unknown_arch_hint",
    "unload_plugins",
]

logger = logging.getLogger(__name__)

ENV_VAR = "ATLAS_PLUGINS"

# Loaded (or failed) plugins by key (resolved file path or module name), in load order. The lock makes two threads
# (the dashboard's script thread and its engine warm-up) load each plugin once; it is re-entrant because a plugin's
# own imports may reach load_plugins again.
_REPORTS: dict[str, PluginReport] = {}
_LOADING: set[str] = set()
_LOCK = threading.RLock()


@dataclass(frozen=True)
class PluginReport:
    """What became of one ``ATLAS_PLUGINS`` entry. ``error`` set → nothing of it is registered."""

    entry: str
    source: str
    module: str | None = None
    archs: tuple[str, ...] = ()
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "archs": list(self.archs), "ok": self.ok}


class _PluginNotFound(Exception):
    """The entry names no file or module; the message says which and where it looked."""


def parse_plugin_spec(spec: str) -> list[str]:
    """``a.py:pkg.mod,b.py`` → ``["a.py", "pkg.mod", "b.py"]`` (blank entries and repeats dropped)."""
    parts = (part.strip() for part in re.split(f"[{re.escape(os.pathsep)},]", spec))
    return list(dict.fromkeys(part for part in parts if part))


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def _resolved(entry: str) -> Path:
    return (Path.cwd() / Path(entry).expanduser()).resolve()


def _key(entry: str) -> str:
    return str(_resolved(entry)) if _is_path(entry) else entry


def load_plugins(spec: str | None = None) -> list[PluginReport]:
    """Import each plugin in ``spec`` (default: ``$ATLAS_PLUGINS``) not imported yet; return their reports.

    Idempotent: a plugin already loaded (or already failed) is not imported again. Never raises for a bad plugin.
    """
    entries = parse_plugin_spec(os.environ.get(ENV_VAR, "") if spec is None else spec)
    reports = []
    with _LOCK:
        if _LOADING:
            # Called from inside a plugin that is being imported (the lock is re-entrant, so this is that thread):
            # loading the next plugins now would credit their architectures to this one.
            return [_REPORTS[key] for key in map(_key, entries) if key in _REPORTS]
        for entry in entries:
            key = _key(entry)
            if key not in _REPORTS:
                _LOADING.add(key)
                try:
                    _REPORTS[key] = _load_one(entry)
                finally:
                    _LOADING.discard(key)
                _log(_REPORTS[key])
            reports.append(_REPORTS[key])
        if spec is None:
            _export_absolute(entries)
    return reports


def _export_absolute(entries: list[str]) -> None:
    # Job processes inherit the environment but start in the repository root: give them absolute file paths, so
    # a relative entry means the same file to them as to the process that started them.
    absolute = os.pathsep.join(str(_resolved(entry)) if _is_path(entry) else entry for entry in entries)
    if entries and os.environ.get(ENV_VAR) != absolute:
        os.environ[ENV_VAR] = absolute


def plugin_reports() -> list[PluginReport]:
    """Every plugin loaded (or refused) in this process so far, in load order."""
    with _LOCK:
        return list(_REPORTS.values())


def unload_plugins() -> None:
    """Forget every plugin: remove the architectures they registered and their modules (for tests and reloads)."""
    with _LOCK:
        for report in _REPORTS.values():
            for name in report.archs:
                if report.module and getattr(ARCHS.get(name), "__module__", None) == report.module:
                    del ARCHS[name]
            if report.module:
                sys.modules.pop(report.module, None)
        _REPORTS.clear()


def unknown_arch_hint() -> str:
    """Why an architecture may be unknown: the plugins that failed, or that none is configured (for ConfigError)."""
    failed = [report for report in plugin_reports() if not report.ok]
    if failed:
        return "; plugins that failed to load (fix them to get their architectures): " + "; ".join(
            str(report.error) for report in failed)
    if not plugin_reports() and not os.environ.get(ENV_VAR, "").strip():
        return f" (an architecture from a plugin needs its module in {ENV_VAR}, which is not set)"
    return ""


def _log(report: PluginReport) -> None:
    if report.error:
        logger.warning("%s", report.error)
    elif report.warning:
        logger.warning("%s", report.warning)
    else:
        logger.info("plugin %s registered %s", report.entry, ", ".join(report.archs))


def _load_one(entry: str) -> PluginReport:
    before = dict(ARCHS)
    source, module_name, preloaded = entry, None, False
    try:
        if _is_path(entry):
            source, module_name = _file_target(entry)
            _exec_file(module_name, Path(source))
        else:
            module_name, preloaded = entry, entry in sys.modules
            source = _module_file(entry)
            importlib.import_module(entry)
        archs = _registered(before, module_name, preloaded)
        replaced = [name for name, cls in before.items() if ARCHS.get(name) is not cls]
    except _PluginNotFound as err:
        return PluginReport(entry, source, error=f"plugin {entry}: {err}")
    except ArchitectureClash as clash:
        return _refused(entry, source, module_name, before, _clash_message(entry, clash, source))
    except (Exception, SystemExit) as err:  # a plugin's own bug: report it, never take the Atlas down with it
        where = _where(err, source)
        text = err.msg if isinstance(err, SyntaxError) else err  # a SyntaxError's str() repeats file and line
        message = f"plugin {entry} failed to import: {type(err).__name__}: {text}" + (f" at {where}" if where else "")
        return _refused(entry, source, module_name, before, message)
    if replaced:
        # register_arch refuses a taken name; writing into ARCHS directly (or deleting from it) gets past it, and
        # would leave every checkpoint of the old architecture building the plugin's class instead.
        return _refused(entry, source, None if preloaded else module_name, before,
                        _replaced_message(entry, replaced, before))
    not_modules = [f"{name!r} ({ARCHS[name]!r})" for name in archs
                   if not (isinstance(ARCHS[name], type) and issubclass(ARCHS[name], nn.Module))]
    if not_modules:
        # A module the user's code imported earlier stays theirs: only the registrations are undone.
        return _refused(entry, source, None if preloaded else module_name, before,
                        f"plugin {entry} registers {', '.join(not_modules)}, not a torch.nn.Module class; "
                        "decorate the model class itself")
    warning = None if archs else (f"plugin {entry} registers no architecture; decorate its model class with "
                                  "@register_arch(\"a_new_name\") from core.models")
    return PluginReport(entry, source, module_name, archs, warning=warning)


def _file_target(entry: str) -> tuple[str, str]:
    path = _resolved(entry)
    if not path.is_file():
        raise _PluginNotFound(f"file {path} does not exist (relative paths start from {Path.cwd()})")
    if path.suffix != ".py":
        raise _PluginNotFound(f"{path} is not a .py file")
    stem = re.sub(r"\W", "_", path.stem)
    return str(path), f"atlas_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def _exec_file(module_name: str, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise _PluginNotFound(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs, as for a normal import (dataclasses and typing look classes up there).
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def _module_file(entry: str) -> str:
    if not all(part.isidentifier() for part in entry.split(".")):
        raise _PluginNotFound("is neither a path to a .py file nor a dotted module name")
    try:
        spec = importlib.util.find_spec(entry)
    except ModuleNotFoundError as err:
        # A missing parent package means "not found"; anything else its __init__ raised is the plugin's own bug.
        if not err.name or not (entry + ".").startswith(err.name + "."):
            raise
        spec = None
    if spec is None:
        raise _PluginNotFound(f"no module named {entry!r} on sys.path (set PYTHONPATH, or give the .py file's path)")
    return spec.origin or entry


def _registered(before: dict[str, type], module_name: str | None, preloaded: bool) -> tuple[str, ...]:
    if preloaded:
        # Imported before (by the user's own code): what it registered then is what belongs to it.
        return tuple(name for name, cls in ARCHS.items() if cls.__module__ == module_name)
    return tuple(name for name, cls in ARCHS.items() if before.get(name) is not cls)


def _refused(entry: str, source: str, module_name: str | None, before: dict[str, type], message: str
             ) -> PluginReport:
    # Put back exactly what was there: drop names the plugin added, restore any it overwrote. Targeted edits rather
    # than clear() + update(), so another thread never sees an empty registry.
    for name in [name for name in ARCHS if name not in before]:
        del ARCHS[name]
    for name, cls in before.items():
        if ARCHS.get(name) is not cls:
            ARCHS[name] = cls
    if module_name:
        sys.modules.pop(module_name, None)
    return PluginReport(entry, source, error=message)


def _owner(cls: type) -> str:
    for report in plugin_reports():
        if report.module == cls.__module__:
            return f"{report.entry}'s {cls.__qualname__}"
    return class_path(cls)


def _clash_message(entry: str, clash: ArchitectureClash, source: str) -> str:
    where = _where(clash, source)
    return (f"plugin {entry} registers architecture {clash.name!r}, which is already taken by "
            f"{_owner(clash.existing)}" + (f" (at {where})" if where else "")
            + "; give its class another name in @register_arch(…). Nothing from this plugin was registered")


def _replaced_message(entry: str, names: list[str], before: dict[str, type]) -> str:
    changes = [f"replaces architecture {name!r}, which is already taken by {_owner(before[name])}" if name in ARCHS
               else f"removes architecture {name!r} ({_owner(before[name])})" for name in names]
    return (f"plugin {entry} {' and '.join(changes)}, by changing core.models.ARCHS directly; register its class "
            "under a new name with @register_arch(…) instead. Nothing from this plugin was registered")


def _where(err: BaseException, source: str) -> str:
    """``file, line N`` of the failure, preferring the plugin's own file over the frames it called into."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}, line {err.lineno}"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen")]
    own = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(source)]
    frame = (own or frames or [None])[-1]
    return f"{frame.filename}, line {frame.lineno}" if frame else ""
