"""The run registry (SQLite in ATLAS_HOME) and the shipped-model catalogue."""

from core.store.registry import Registry, pid_alive

__all__ = ["Registry", "pid_alive"]
