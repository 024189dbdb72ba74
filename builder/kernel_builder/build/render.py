"""jinja2 rendering of the files kept in templates/ (never strings in code)."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from .. import PACKAGE_DIR, __version__


def template_dir() -> Path:
    """templates/ beside the package in a wheel (package data), else at the root of the source tree."""
    for candidate in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent.parent / "templates"):
        if (candidate / "_ops.py.j2").is_file():
            return candidate
    raise FileNotFoundError("kernel-builder's templates/ directory is missing from this installation")


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def render(template: str, **context) -> str:
    return _env().get_template(template).render(kb_version=__version__, **context)
