"""Modules imported on first use.

The workflow imports parts of ``bpaitac`` (figure catalogue, table paths, simulator settings) each
time Snakemake starts, and on a cluster Snakemake starts twice per job (the batch job and its
``srun`` step). scipy.stats and matplotlib.pyplot alone cost about 2 s of CPU per start; modules
whose workflow-facing parts do not need them hold a :class:`LazyModule` instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name``; imports it (after calling ``before``, if given) when one of
    its attributes is first read."""

    def __init__(self, name: str, before: Callable[[], None] | None = None):
        self._name = name
        self._before = before
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._module is None:
            if self._before is not None:
                self._before()
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not yet imported"
        return f"<LazyModule {self._name} ({state})>"
