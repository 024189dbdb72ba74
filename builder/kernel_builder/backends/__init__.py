"""The backend registry: one entry per backend family kernel-builder builds, one module per entry.

A backend owns everything that differs between families: the keys of its `[kernel.*]` and
`[general.<family>]` tables, the fields of its build-matrix rows, its version gates, how a host (or a
matrix row) can build it, the variant it produces, and how it compiles (backends/base.py has the
Protocol and the cpp_extension path cpu and cuda share; cann drives CMake). Nothing outside this folder
compares a backend name.

This module imports no backend module: an entry names its module and `get` imports it on first use, so
the format and naming layers below (config, variants) can ask the registry without an import circle, and a
plug-in (or a test) can `register` a backend object of its own.
May import: errors, settings, tools, variants, project (the typed project), build (host facts, the staging
helpers a compile path uses, cache, render). Never matrix/ or hub/.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError

# family -> module that defines BACKEND. Adding a backend: a module here plus this one line.
ENTRIES: dict[str, str] = {
    "cpu": f"{__name__}.cpu",
    "cuda": f"{__name__}.cuda",
    "cann": f"{__name__}.cann",
}

# family -> module of its CPU twin mode, which defines `twin(targets) -> backend` (build --<family>-twin).
TWINS: dict[str, str] = {
    "cann": f"{__name__}.cann_twin",
}

_loaded: dict[str, Any] = {}


class UnknownBackend(UsageError):
    """A family with no registered backend: one line, exit 2, like any other bad input."""


def register(family: str, backend: Any) -> None:
    """Make `backend` the builder of `family` (replacing a built-in one)."""
    if getattr(backend, "family", None) != family:
        raise ValueError(f"backend object for {family!r} says its family is {getattr(backend, 'family', None)!r}")
    ENTRIES[family] = "<registered>"
    _loaded[family] = backend


def unregister(family: str) -> None:
    ENTRIES.pop(family, None)
    _loaded.pop(family, None)


def families() -> tuple[str, ...]:
    """The families kernel-builder builds, in registration order."""
    return tuple(ENTRIES)


def is_built(family: str) -> bool:
    return family in ENTRIES


def get(family: str) -> Any:
    """The backend of `family` (an object of backends.base's `Backend` Protocol); UnknownBackend when none
    is registered."""
    if family not in _loaded:
        module = ENTRIES.get(family)
        if module is None:
            raise UnknownBackend(f"backend {family!r} is not built by kernel-builder "
                                 f"(built: {', '.join(ENTRIES) or 'none'})")
        _loaded[family] = importlib.import_module(module).BACKEND
    return _loaded[family]


def get_twin(family: str, targets: tuple[str, ...]) -> Any:
    """The backend of `family` in its CPU twin mode for `targets` (the chips it stands for); UsageError when
    the family has none. The twin module validates the targets and finds its tools (EnvironmentProblem)."""
    module = TWINS.get(family)
    if module is None:
        raise UsageError(f"--{family}-twin: backend {family!r} has no CPU twin "
                         f"(twins: {', '.join(TWINS) or 'none'})")
    return importlib.import_module(module).twin(targets)
