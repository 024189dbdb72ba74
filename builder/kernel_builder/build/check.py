"""`kernel-builder check BUILD_DIR`: hold a built tree to the loader's rules before anyone uploads it.

Rules are checked with our own reading of the contract and, where the `kernels` package is installed,
with the loader's own parsers too (variant names, metadata.json), so a disagreement shows up here
rather than on a user's machine. Every violation names variant, file and rule.
"""

from __future__ import annotations

import json
import keyword
import os
import platform
import re
import sys
from pathlib import Path

from .. import backends, variants as V
from ..project.config import PYTHON_DEPENDS
from .elf import elf_problem, private_libstdcxx
from .layout import digest_dir
from ..errors import ToolTimeout, clip
from ..tools import probe, run

REQUIRED = {"name": str, "id": str, "version": int, "license": str, "python-depends": list, "backend": dict}
OPTIONAL = {"upstream", "source", "kernel-depends", "kernels-minver", "digest", "provenance"}

_IMPORT_PROBE = r"""
import importlib.util, sys, torch
path, mid = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location(mid, path + "/__init__.py", submodule_search_locations=[path])
mod = importlib.util.module_from_spec(spec)
sys.modules[mid] = mod
spec.loader.exec_module(mod)
ops = sorted({s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith(mid + "::")})
print("OPS", len(ops))
"""


def variant_dirs(path: Path) -> tuple[Path, list[Path]]:
    if (path / "metadata.json").is_file():
        return path.parent, [path]
    base = path / "build" if (path / "build").is_dir() and not (path / "metadata.json").exists() else path
    return base, sorted(p for p in base.iterdir())


def _host_can_import(v: V.Variant) -> bool:
    """Whether this host's torch would load `v`: the same arch, OS and torch, and a backend that says so."""
    from .host import detect

    h = detect()
    if v.kind == "noarch" and v.backend == V.UNIVERSAL:
        return True
    if v.kind != "noarch":
        if v.arch != h.arch or v.os != h.os:
            return False
        if v.kind == "torch" and v.torch != h.torch_mm:
            return False
        if v.kind == "stable" and v.torch > h.torch_mm:
            return False
    family = v.backend_type
    return backends.is_built(family) and backends.get(family).can_load(v, h)


class _Findings(list):
    """The violations of one variant, each spelled "<variant>/<file>: <rule>: <detail>"."""

    def __init__(self, vdir: Path):
        super().__init__()
        self.vdir = vdir

    def __call__(self, rel: str, rule: str, detail: str) -> None:
        """Details quote the tree's own contents (an id, a name): cut, so that a finding stays one line."""
        self.append(f"{self.vdir.name}/{rel}: {rule}: {clip(detail)}")


def check_variant(vdir: Path, import_check: bool, abi_check: bool, allow_twin: bool = False) -> list[str]:
    """Every violation of one variant directory. Later rules need earlier ones to hold (a metadata.json
    that parses, files the digest can name), so each stage runs only when the ones before found nothing."""
    bad = _Findings(vdir)
    v = _check_name(vdir, bad)
    meta = _read_metadata(vdir, bad) if v else None
    if meta is None or bad:
        return bad
    _check_contents(vdir, v, meta, bad)
    if twin_of(meta) and not allow_twin:
        bad("metadata.json", "twin", f"twin build: not publishable ({twin_of(meta)}; its kernels ran on the CPU "
            "in kernel-builder's twin, not on the hardware they were written for); --allow-twin checks it anyway")
    _check_digest(vdir, meta, bad)
    for so in sorted(vdir.rglob("*.so")) if not bad else ():
        problem = elf_problem(so)
        if problem:
            bad(so.relative_to(vdir).as_posix(), "elf", problem)
    if bad:
        return bad
    if abi_check:
        bad += [f"{vdir.name}/{p}" for p in abi_problems(vdir)]
    if v.kind == "stable":  # not optional: a stable-ABI variant that is not is a crash on the next torch
        bad += [f"{vdir.name}/{p}" for p in stable_abi_problems(vdir)]
    if import_check and v.kind != "noarch":
        _check_import(vdir, v, meta["id"], bad)
    return list(bad)


def _check_name(vdir: Path, bad: _Findings) -> V.Variant | None:
    try:
        v = V.parse(vdir.name)
    except ValueError as e:
        bad("", "variant-name", str(e))
        return None
    try:
        from kernels.variants import parse_variant

        if parse_variant(vdir.name).variant_str != vdir.name:
            bad("", "variant-name", "the kernels loader spells this name differently")
    except ImportError:
        pass
    except ValueError as e:
        bad("", "variant-name", f"rejected by the kernels loader: {e}")
    return v


def _read_metadata(vdir: Path, bad: _Findings) -> dict | None:
    """metadata.json parsed, its keys and types held to the contract and to the loader's own parser."""
    mpath = vdir / "metadata.json"
    if not mpath.is_file():
        bad("metadata.json", "metadata", "missing")
        return None
    try:
        meta = json.loads(mpath.read_text())
    except (ValueError, RecursionError) as e:  # RecursionError: arrays nested thousands deep
        bad("metadata.json", "metadata", f"not JSON: {e}")
        return None
    if not isinstance(meta, dict):
        bad("metadata.json", "metadata", f"not a JSON object: {type(meta).__name__}")
        return None
    for key, typ in REQUIRED.items():
        if key not in meta:
            bad("metadata.json", "metadata", f"required key {key!r} missing")
        elif not isinstance(meta[key], typ) or (typ is int and isinstance(meta[key], bool)):
            bad("metadata.json", "metadata", f"{key!r} must be {typ.__name__}")
    for key in set(meta) - set(REQUIRED) - OPTIONAL:
        bad("metadata.json", "metadata", f"unknown key {key!r}")
    try:
        from kernels._rust import Metadata

        Metadata.from_bytes(mpath.read_bytes())
    except ImportError:
        pass
    except ValueError as e:
        bad("metadata.json", "metadata", f"rejected by the kernels loader: {e}")
    return meta


def _check_contents(vdir: Path, v: V.Variant, meta: dict, bad: _Findings) -> None:
    """What metadata.json says against the variant's name, and the files a loader imports."""
    mid, module = meta["id"], meta["name"].replace("-", "_")
    if not mid.isidentifier() or keyword.iskeyword(mid):
        bad("metadata.json", "id", f"{mid!r} is not a Python identifier")
    btype = meta["backend"].get("type")
    if btype != v.backend_type and not (v.kind == "noarch" and v.backend == V.UNIVERSAL):
        bad("metadata.json", "backend", f"type {btype!r} but the variant is {v.backend_type}")
    family = V.FAMILIES.get(btype)
    if v.kind != "noarch" and family is not None and family.archs and not meta["backend"].get("archs"):
        bad("metadata.json", "backend", f"{btype} variants list their archs")
    allowed = set(PYTHON_DEPENDS["general"]) | set(PYTHON_DEPENDS.get(btype, ()))
    for d in meta["python-depends"]:
        if d not in allowed:
            bad("metadata.json", "python-depends", f"{d!r} is not on the loader's allow-list")
    if not (vdir / "__init__.py").is_file():
        bad("__init__.py", "layout", "the kernel package's __init__.py is missing")
    if any(p.name == "__pycache__" for p in vdir.rglob("__pycache__")):
        # Python writes these when a variant is imported in place; the digest and upload skip them.
        print(f"note: {vdir.name}: has __pycache__ (ignored by the digest; never uploaded)")
    if v.kind == "noarch":
        return
    if not re.fullmatch(rf"_{re.escape(module)}_{re.escape(btype)}_[0-9a-z]+", mid) or len(mid) > 200:
        bad("metadata.json", "id", f"{mid!r} is not _{module}_{btype}_<unique>")
        return  # no file can be named after it (a megabyte id is no file name at all)
    so = vdir / f"{mid}.abi3.so"
    if not so.is_file():
        bad(so.name, "layout", "the extension is named after the id and built for the limited API (.abi3.so)")
    ops_py = vdir / "_ops.py"
    if not ops_py.is_file() or f"torch.ops.{mid}" not in ops_py.read_text(errors="replace"):
        bad("_ops.py", "layout", f"must expose ops = torch.ops.{mid}")


def _check_digest(vdir: Path, meta: dict, bad: _Findings) -> None:
    dg = meta.get("digest")
    if dg is None:
        bad("metadata.json", "digest", "missing")
        return
    actual = digest_dir(vdir)
    if dg.get("algorithm") != "sha256":
        bad("metadata.json", "digest", f"algorithm {dg.get('algorithm')!r}, expected sha256")
    for rel in sorted(set(dg.get("files", {})) | set(actual["files"])):
        want, got = dg.get("files", {}).get(rel), actual["files"].get(rel)
        if want != got:
            what = "missing" if got is None else ("not in the digest" if want is None else "hash differs")
            bad(rel, "digest", what)


def twin_of(meta: dict) -> str | None:
    """What a twin build stands for ("cann Ascend910B1, arch group c220"), None for a real build:
    provenance.twin, written by a backend's twin mode (see backends/cann_twin.py)."""
    twin = (meta.get("provenance") or {}).get("twin") if isinstance(meta.get("provenance"), dict) else None
    if not twin:
        return None
    if not isinstance(twin, dict):
        return "a twin build"
    socs = twin.get("soc") or ""
    return f"a {twin.get('backend', 'hardware')} twin of {', '.join(socs) if isinstance(socs, list) else socs}"


IMPORT_TIMEOUT = 600.0


def _check_import(vdir: Path, v: V.Variant, mid: str, bad: _Findings) -> None:
    """Import the variant with this host's torch in a fresh interpreter and count the ops it registers."""
    if not _host_can_import(v):
        print(f"note: {vdir.name}: not importable on this host ({platform.machine()}, this torch); "
              "import check skipped")
        return
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # checking must not write into the tree
    try:
        r = run([sys.executable, "-c", _IMPORT_PROBE, str(vdir), mid], f"{vdir.name}: import",
                timeout=IMPORT_TIMEOUT, env=env)
    except ToolTimeout:
        bad("__init__.py", "import", f"did not finish within {IMPORT_TIMEOUT:.0f} s (a hang at import time)")
        return
    out = (r.stdout + r.stderr).strip().splitlines()
    if r.returncode != 0:
        bad("__init__.py", "import", out[-1] if out else f"exit status {r.returncode}")
    elif "OPS 0" in out:
        bad(f"{mid}.abi3.so", "import", f"registers no ops in torch.ops.{mid}")


_TORCH_CXX = re.compile(r"\b(c10|at|torch|caffe2)::")


def stable_abi_problems(vdir: Path) -> list[str]:
    """A torch-stable-abi variant may call torch only through the C shim (aoti_torch_*, torch_*): any
    undefined C++ symbol of c10 / at / torch is resolved against one torch release's libraries and breaks
    on the next. Typeinfo and vtables of those namespaces count too."""
    out = []
    for so in sorted(vdir.rglob("*.so")):
        r = probe(["nm", "-D", "-C", "--undefined-only", str(so)])
        if r is None:
            return [f"{so.name}: stable-abi: `nm` (binutils) is needed to check the stable ABI"]
        names = [ln.split(None, 1)[1].split("@")[0].strip() for ln in r.stdout.splitlines() if len(ln.split(None, 1)) == 2]
        bad = sorted({n for n in names if _TORCH_CXX.search(n)})
        if bad:
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            out.append(f"{so.name}: stable-abi: uses {bad[0]} from torch's C++ API, outside the stable ABI{more}")
    return out


def abi_problems(vdir: Path, manylinux: str = "manylinux_2_28", python_abi: str = "3.9") -> list[str]:
    try:
        import kernel_abi_check as kac
    except ImportError:
        return ["*.so: abi: kernel-abi-check is not installed (pip install 'kernel-abi-check>=0.14,<0.15') "
                "or pass --no-abi"]
    out = []
    for so in sorted(vdir.rglob("*.so")):
        if private_libstdcxx(so):
            out.append(f"{so.name}: libstdc++: linked statically (defines __cxa_throw); torch's exceptions would crash it")
        try:
            obj = kac.ObjectFile(so)
            manylinux_found, abi3_found = obj.check_manylinux(manylinux), obj.check_python_abi(python_abi)
        except ValueError as e:  # an ELF file it cannot parse: a finding, not a crash of check
            out.append(f"{so.name}: elf: kernel-abi-check cannot read it ({str(e).splitlines()[0] if str(e) else e!r})")
            continue
        for v in manylinux_found:
            out.append(f"{so.name}: {manylinux}: symbol {v.name} needs {v.dep}_{v.version}")
        for v in abi3_found:
            name = getattr(v, "name", v)
            out.append(f"{so.name}: abi3 {python_abi}: {name} is not in the limited API")
    return out


def check_tree(path: Path, import_check: bool = True, abi_check: bool = True, allow_twin: bool = False) -> int:
    from ..errors import CheckFailed, UsageError

    if not path.is_dir():
        raise UsageError(f"{path}: no such directory")
    base, entries = variant_dirs(path)
    problems: list[str] = []
    checked = 0
    for e in entries:
        if not e.is_dir():
            problems.append(f"{e.name}: layout: a build directory holds only variant directories")
            continue
        checked += 1
        found = check_variant(e, import_check, abi_check, allow_twin)
        print(f"{'FAIL' if found else 'ok  '} {e.name}")
        problems += found
    if not checked:
        problems.append(f"{base}: layout: no variant directories")
    for p in problems:
        print(f"  {p}")
    if problems:
        raise CheckFailed(f"{base}: {len(problems)} violation(s); first: {problems[0]}")
    print(f"{checked} variant(s) passed")
    return 0
