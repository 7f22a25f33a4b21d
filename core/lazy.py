"""A module proxy that imports on first attribute access.

The dataset catalogue and the run registry are needed by the dashboard's first page, which must not pay for
importing torch (~1.5 s of CPU on a 2-core laptop). Modules that only touch torch inside functions import it
through this proxy; sys.modules is not touched, so every other ``import torch`` behaves as usual.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_target"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_target"])
        return getattr(module, attr)


torch = LazyModule("torch")
