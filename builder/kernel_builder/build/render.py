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


def cmake_escape(text: str) -> str:
    """Text made safe inside a CMake quoted argument: a flag or path from build.toml holding `)`, `"`, `$` or a
    backslash stays one literal value instead of ending the command or expanding a variable."""
    return "".join("\\" + c if c in '\\"$' else c for c in str(text))


def cmake_quote(text: str) -> str:
    return f'"{cmake_escape(text)}"'


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters.update(cmake=cmake_quote, cmake_escape=cmake_escape)
    return env


def render(template: str, **context) -> str:
    return _env().get_template(template).render(kb_version=__version__, **context)
