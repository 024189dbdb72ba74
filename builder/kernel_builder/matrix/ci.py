"""`kernel-builder ci github`: a GitHub Actions workflow whose job matrix is the project's variant list.

The workflow is rendered from templates/ci/github.yml.j2; each build job runs exactly the command our
own CI runs for one variant (`kernel-builder build DIR --all --variant NAME`), so what is green here is
green there.
"""

from __future__ import annotations

from .. import __version__
from ..project.model import Project
from .table import Matrix, expand
from ..build.render import render

DEFAULT_INSTALL = f"pip install 'kernel-builder=={__version__}'"


def github_workflow(project: Project, matrix: Matrix, project_dir: str, install: str | None = None) -> str:
    variants = [e.variant.name for e in expand(project, matrix) if e.variant]
    return render("ci/github.yml.j2", name=project.general.name, variants=variants,
                  project_dir=project_dir.rstrip("/") or ".", install=install or DEFAULT_INSTALL)
