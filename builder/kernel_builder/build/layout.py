"""The variant tree: the files of build/<variant>/, metadata.json, digest and provenance (CONTRACT §3-4).

A variant is assembled in memory (relative path -> bytes), its metadata computed from those bytes, and
only then written: into a hidden temporary directory beside the target, renamed into place. A failed
build leaves the previous variant, or nothing, and the output directory holds only variant directories.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

from .. import PACKAGE_DIR, __version__, settings
from ..project.model import Project
from ..errors import ConfigError, UsageError
from ..tools import probe

EXCLUDED_TOP = {"metadata.json", "metadata.json.sigstore"}


def package_files(project: Project) -> dict[str, bytes]:
    """The kernel's Python package (torch-ext/<module>/), without caches: what the loader imports. A file
    that resolves outside the project is refused here too (load_project refused it already; the tree may
    have changed since), so no outside byte reaches a variant or its digest."""
    files = {}
    base = project.package_dir
    for p in project.package_files():
        rel = p.relative_to(base).as_posix()
        if not p.resolve().is_relative_to(project.root):
            raise ConfigError(project.file, "general.name", f"torch-ext/{project.general.module}/{rel}: leaves the "
                              "project through a symlink")
        files[rel] = p.read_bytes()
    return files


def digest(files: dict[str, bytes]) -> dict:
    """sha256 of every file but the top-level metadata, base64 as the loader's Digest writes it."""
    out = {}
    for rel in sorted(files):
        if rel in EXCLUDED_TOP or "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
            continue
        out[rel] = base64.b64encode(hashlib.sha256(files[rel]).digest()).decode()
    return {"algorithm": "sha256", "files": out}


def digest_dir(variant_dir: Path) -> dict:
    files = {p.relative_to(variant_dir).as_posix(): p.read_bytes()
             for p in variant_dir.rglob("*") if p.is_file()}
    return digest(files)


def _git(cwd: Path, *args: str) -> str | None:
    r = probe(["git", "-C", str(cwd), *args], timeout=30)
    return r.stdout.strip() if r is not None and r.returncode == 0 else None


def git_status(path: Path, inputs: list[Path] | None = None) -> dict | None:
    """{"commit", "dirty"} of the git tree holding `path`; dirty = its tracked files differ from HEAD, or
    one of `inputs` (the files a build reads) is not in the commit at all. None outside git (then
    metadata has no such entry rather than a made-up one)."""
    commit = _git(path, "rev-parse", "HEAD")
    if not commit:
        return None
    changed = _git(path, "status", "--porcelain", "--untracked-files=no", "--", ".")
    if not changed and inputs:
        changed = _git(path, "status", "--porcelain", "--untracked-files=all", "--", *map(str, inputs))
    return {"commit": commit, "dirty": bool(changed)}


def provenance(project: Project) -> dict:
    """Where the build came from. A container build is handed the host's answer (KERNEL_BUILDER_PROVENANCE):
    inside, the project is a bare mount without its git repository."""
    given = settings.current().provenance
    if given:
        return given
    kb = {"version": __version__}
    kb_git = git_status(PACKAGE_DIR)
    if kb_git:
        kb.update(kb_git)
    prov = {"kernel-builder": kb}
    kernel = git_status(project.root, project.all_inputs())
    if kernel:
        prov["kernel"] = kernel
    return prov


def metadata(project: Project, kernel_id: str, backend: dict, files: dict[str, bytes], prov: dict) -> dict:
    g = project.general
    python_depends = list(g.python_depends) + list(g.backend_python_depends.get(backend["type"], ()))
    meta = {"name": g.name, "id": kernel_id, "version": g.version if g.version is not None else 1,
            "license": g.license, "python-depends": python_depends, "backend": backend}
    if g.upstream:
        meta["upstream"] = g.upstream
    if g.source:
        meta["source"] = g.source
    meta["digest"] = digest(files)
    meta["provenance"] = prov
    return meta


def metadata_bytes(meta: dict) -> bytes:
    return (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode()


def _refuse_foreign(target: Path) -> None:
    if target.exists() and not (target / "metadata.json").is_file():
        raise UsageError(f"{target}: exists and was not made by kernel-builder (no metadata.json); "
                         "remove it or choose another --out")


def _swap_in(out_dir: Path, variant: str, tmp: Path) -> None:
    """Replace out_dir/variant by the finished tree `tmp` (same file system): the old tree is renamed
    away, the new one renamed in, the old one deleted; at no moment is a half-written variant visible."""
    target = out_dir / variant
    old = out_dir / f".{variant}.old-{os.getpid()}"
    try:
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def install(out_dir: Path, variant: str, files: dict[str, bytes]) -> bool:
    """Write `files` as out_dir/variant atomically. Returns False when the tree already holds exactly
    these bytes (a no-op build touches nothing)."""
    target = out_dir / variant
    _refuse_foreign(target)
    if target.exists():
        try:
            same = (target / "metadata.json").read_bytes() == files["metadata.json"] and all(
                (target / rel).is_file() for rel in files)
        except OSError:
            same = False
        if same and set(digest_dir(target)["files"]) == set(digest(files)["files"]):
            return False
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{variant}.tmp-{os.getpid()}"
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            if rel.endswith(".so"):
                p.chmod(0o755)
        _swap_in(out_dir, variant, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def adopt(out_dir: Path, variant: str, built: Path) -> bool:
    """Move a variant tree built elsewhere (a container's staging directory on the same file system)
    into out_dir. False when out_dir already holds the same bytes; `built` is consumed either way."""
    target = out_dir / variant
    _refuse_foreign(target)
    try:
        if target.exists() and (target / "metadata.json").read_bytes() == (built / "metadata.json").read_bytes() \
                and digest_dir(target) == digest_dir(built):
            return False
        _swap_in(out_dir, variant, built)
        return True
    finally:
        shutil.rmtree(built, ignore_errors=True)
