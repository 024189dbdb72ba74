"""`kernel-builder ci github`: a GitHub Actions workflow whose job matrix is the project's variant list.

The workflow is rendered from templates/ci/github.yml.j2; each build job runs exactly the command our
own CI runs for one variant (`kernel-builder build DIR --all --variant NAME`), so what is green here is
green there.
"""

from __future__ import annotations

from .. import __version__
from ..project.model import Project
from .images import LOCAL_PREFIX
from .table import Matrix, expand
from ..build.render import render

DEFAULT_INSTALL = f"pip install 'kernel-builder=={__version__}'"


def github_workflow(project: Project, matrix: Matrix, project_dir: str, install: str | None = None) -> str:
    jobs = [{"variant": e.variant.name, "runner": _runner(e.variant.arch),
             **_local_base(e.env.image.base if e.env else "")}
            for e in expand(project, matrix) if e.variant]
    return render("ci/github.yml.j2", name=project.general.name, jobs=jobs,
                  project_dir=project_dir.rstrip("/") or ".", install=install or DEFAULT_INSTALL)


# GitHub-hosted runners by CPU arch: a container builds natively only on its own arch (an aarch64 image on an
# x86 runner would need qemu, and torch's compiles under emulation take hours).
RUNNERS = {"aarch64": "ubuntu-24.04-arm"}
DEFAULT_RUNNER = "ubuntu-latest"


def _runner(arch: str | None) -> str:
    return RUNNERS.get(arch or "", DEFAULT_RUNNER)


def _local_base(base: str) -> dict[str, str]:
    """A base no registry serves (`local/debian:SUITE`, e.g. the CUDA 12 rows' trixie) is made in the job with
    debootstrap, as scripts/make_base_image.sh makes it here; any other base is pulled by the image build."""
    repo, _, suite = base.partition(":")
    local = repo == f"{LOCAL_PREFIX}debian" and suite
    return {"base": base if local else "", "suite": suite if local else ""}
