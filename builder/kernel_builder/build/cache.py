"""Where generated files, ninja build trees and stamps live: outside the project, which may be read-only.

`KERNEL_BUILDER_CACHE` overrides the location (settings.py; tests point it into a temporary directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from .. import settings


def base() -> Path:
    """The cache's location, without creating it (planning computes paths and writes nothing)."""
    return settings.current().cache_dir


def root() -> Path:
    """The cache's location, created when missing."""
    path = base()
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_key(project_root: Path) -> str:
    """A checkout's cache key: its path, so two checkouts never share build state."""
    return hashlib.sha256(str(project_root.resolve()).encode()).hexdigest()[:12]


def variant_path(project_root: Path, name: str, variant: str) -> Path:
    """One work directory per (project, variant); staging creates it."""
    return base() / "builds" / f"{name}-{project_key(project_root)}" / variant


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(directory: Path):
    """Hold an exclusive lock on a variant's cache directory: two builds of one project (CI jobs, an
    editor's build-on-save) take turns instead of interleaving ninja runs and stamps."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
