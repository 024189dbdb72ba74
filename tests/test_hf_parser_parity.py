"""Parser parity with Hugging Face: our format layer accepts every build.toml HF's parser accepts.

HF's parser is `kernels._rust.Build.open(dir)` (the PyPI `kernels` package). Ours is
`kernel_builder.project.config.load_project(dir)`. Over every build.toml under tests/ and kernels_src/:
a file HF accepts and we reject fails this test, unless it is a case of the malformed-input corpus whose
refusal tests/bad_inputs/README.md lists (table "Refusals Hugging Face's parser accepts": cannot build,
cannot load, unsafe). HF rejecting a file we accept is fine (our format has extensions: cann tables, ...).

Lint-level findings are notes, not errors: tests/projects/hf_lint/ (former corpus cases) must load with
a note naming the key and value, and the HF-style compatibility projects build for the cpu backend.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kernel_builder.errors import ConfigError
from kernel_builder.project.config import load_project

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = HERE / "bad_inputs"
LINT = HERE / "projects" / "hf_lint"
BUILD_TOMLS = sorted({p.parent for root in (HERE, REPO / "kernels_src") for p in root.rglob("build.toml")})
IDS = [str(d.relative_to(REPO)) for d in BUILD_TOMLS]
LINT_CASES = sorted(p.parent for p in LINT.glob("*/note.toml"))
# HF-style compatibility projects: each builds for the cpu backend and prints its note.
COMPAT = {
    "dup_src": ("kernel.scale_cpu.src", "lists the same path twice"),
    "git_upstream": ("general.upstream", "git+https://github.com/acme/git-upstream"),
    "stable_abi_unlisted": ("torch.stable-abi.rocm", "not listed in general.backends"),
    "header_only_kernel": ("kernel.common.src", "header-only kernel"),
}

Build = pytest.importorskip("kernels._rust", reason="Hugging Face's `kernels` (its build.toml parser) is needed").Build


def _hf_accepts(project: Path) -> bool:
    try:
        Build.open(str(project))
    except ValueError:
        return False
    return True


def _ours(project: Path):
    """(Project, None) or (None, the one-line error)."""
    try:
        return load_project(project), None
    except ConfigError as e:
        return None, str(e)


def _documented_refusals() -> dict[str, str]:
    """tests/bad_inputs/README.md's table of refusals HF's parser accepts: case -> why."""
    text = (CORPUS / "README.md").read_text(encoding="utf-8")
    section = text.split("## Refusals Hugging Face's parser accepts", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| (cannot build|cannot load|unsafe) \| (.+?) \|\s*$", section, re.M)
    return {case: why for case, _, why in rows}


def test_every_build_toml_is_found():
    assert any(d.parent == CORPUS for d in BUILD_TOMLS) and any(d.is_relative_to(REPO / "kernels_src") for d in BUILD_TOMLS)
    assert all(d in BUILD_TOMLS for d in LINT_CASES)


@pytest.mark.parametrize("project", BUILD_TOMLS, ids=IDS)
def test_we_accept_what_hf_accepts(project: Path):
    if not _hf_accepts(project):
        return  # HF rejects: ours may accept (format extensions) or reject
    _, error = _ours(project)
    if error is None:
        return
    documented = _documented_refusals()
    assert project.parent == CORPUS and project.name in documented, (
        f"HF's parser accepts {project} but our format layer refuses it, and tests/bad_inputs/README.md does "
        f"not list it as a refusal that cannot build, cannot load or is unsafe:\n{error}")


def test_documented_refusals_are_exactly_the_hf_accepted_corpus_cases():
    """The README table is the allow-list: no case missing from it, none listed that is not (any longer)
    an HF-accepted corpus case we refuse."""
    documented = _documented_refusals()
    assert documented, "no refusal table found in tests/bad_inputs/README.md"
    actual = {d.name for d in BUILD_TOMLS if d.parent == CORPUS and _hf_accepts(d) and _ours(d)[1] is not None}
    assert not actual - set(documented), f"refused, HF accepts, not in the README table: {sorted(actual - set(documented))}"
    assert not set(documented) - actual, f"in the README table but not an HF-accepted refusal: {sorted(set(documented) - actual)}"
    for case, why in documented.items():
        expect = tomllib.loads((CORPUS / case / "expect.toml").read_text(encoding="utf-8"))
        assert expect["hf_rejects"] is False and why.strip(), case


@pytest.mark.parametrize("case", LINT_CASES, ids=[c.name for c in LINT_CASES])
def test_lint_findings_are_notes(case: Path):
    spec = tomllib.loads((case / "note.toml").read_text(encoding="utf-8"))
    project, error = _ours(case)
    assert error is None, error
    assert _hf_accepts(case) is not spec["hf_rejects"]
    hits = [n for n in project.notes if spec["key"] in n and spec["value"] in n]
    assert len(hits) == 1 and "\n" not in hits[0], f"want one note naming {spec['key']} {spec['value']!r}: {project.notes}"


def test_repeats_are_dropped_once():
    project, _ = _ours(LINT / "src-duplicate-spelled-differently")
    cpu = project.kernels_for("cpu")[0]
    assert cpu.src == ("mykernel_cpu/kernel.cpp",) and cpu.sources == ("mykernel_cpu/kernel.cpp",)
    project, _ = _ours(LINT / "backends-duplicate")
    assert project.general.backends == ("cpu", "cuda")
    project, _ = _ours(LINT / "stable-abi-undeclared-backend")
    assert project.torch.stable_abi == {}


@pytest.mark.parametrize("name", sorted(COMPAT))
def test_compat_project_builds_for_cpu_with_its_note(name: str, tmp_path: Path):
    key, text = COMPAT[name]
    project = tmp_path / name
    shutil.copytree(HERE / "projects" / name, project)
    assert _hf_accepts(project)
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "builder"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "kernel_builder", "build", str(project), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)
    report = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0 and "Traceback" not in report, report
    notes = [ln for ln in proc.stdout.splitlines() if ln.startswith("note: ") and key in ln and text in ln]
    assert len(notes) == 1, report
    assert list((tmp_path / "out").rglob("*.so")), f"no extension built\n{report}"
