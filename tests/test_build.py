"""The host build end to end: real compiles of a small real project, checked with the real loader.

These use tests/projects/hf_docs_style (one cpu kernel) with a private cache, so each test sees exactly
what its own builds did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kernel_builder import settings

from conftest import build_project, run_cli

VARIANT_GLOB = "torch*-cxx11-cpu-*-linux"


def _variant(out: Path) -> Path:
    found = sorted(out.glob(VARIANT_GLOB))
    assert len(found) == 1, f"expected one cpu variant in {out}: {list(out.iterdir())}"
    return found[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of a read-only copy of the project, shared by the tests that only read or copy it."""

    from conftest import REPO

    base = tmp_path_factory.mktemp("built")
    project, out, cache = base / "proj", base / "out", base / "cache"
    shutil.copytree(REPO / "tests" / "projects" / "hf_docs_style", project)
    for p in [project, *project.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)  # the project may be read-only: nothing is written into it
    env = {"KERNEL_BUILDER_CACHE": str(cache)}
    build_project(project, out, env=env)
    yield {"project": project, "out": out, "env": env}
    for p in [project, *project.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


def _copy_out(built, tmp_path) -> Path:

    dst = tmp_path / "out"
    shutil.copytree(built["out"], dst)
    return dst


def _objects(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.rglob("obj/**/*.o")}


def test_build_layout_metadata_and_loader_digest(built):
    out = built["out"]
    assert not (built["project"] / "build").exists(), "the read-only project was not written to"
    assert [p.name for p in out.iterdir()] == [_variant(out).name], "the output holds only variant directories"
    v = _variant(out)
    meta = json.loads((v / "metadata.json").read_text())
    assert meta["id"].startswith("_relu_docs_cpu_") and meta["id"].isidentifier()
    assert (v / f"{meta['id']}.abi3.so").is_file() and (v / "_ops.py").is_file() and (v / "__init__.py").is_file()
    assert meta["backend"] == {"type": "cpu"} and meta["version"] == 1 and meta["python-depends"] == []
    assert "kernel" not in meta["provenance"], "outside git there is no kernel provenance"
    assert meta["provenance"]["kernel-builder"]["version"]
    assert not list(v.rglob("__pycache__")) and not list(v.rglob("*.pyc"))
    kr = pytest.importorskip("kernels._rust", reason="the kernels package is the digest oracle")
    oracle = kr.Digest.hash_variant(kr.DigestAlgorithm.SHA256, v)
    assert dict(oracle.files) == meta["digest"]["files"]
    kr.Metadata.read_from_file(v / "metadata.json")


def test_incremental_lifecycle(tiny_project, tmp_path, private_cache):
    """no-op rebuild, same id for same inputs, one-file edit, then a broken edit that must not harm the tree."""
    out = tmp_path / "out"
    build_project(tiny_project, out)
    before = _objects(private_cache)
    assert {"relu.o", "binding_0.o", "glibc_compat.o"} <= set(before), before
    meta_path = _variant(out) / "metadata.json"
    id_before, mtime_before = json.loads(meta_path.read_text())["id"], meta_path.stat().st_mtime_ns

    r = build_project(tiny_project, out)
    assert "up to date" in r.stdout
    assert _objects(private_cache) == before, "a no-op rebuild recompiled something"
    assert meta_path.stat().st_mtime_ns == mtime_before, "a no-op rebuild rewrote the tree"
    assert json.loads(meta_path.read_text())["id"] == id_before

    src = tiny_project / "relu_cpu" / "relu.cpp"
    src.write_text(src.read_text() + "\n// an edit\n")
    build_project(tiny_project, out)
    after = _objects(private_cache)
    changed = {name for name in after if after[name] != before.get(name)}
    # the edited source, and the two small files that name the new id: the binding wrapper and the module init
    assert changed == {"relu.o", "binding_0.o", "module_init.o"}, f"recompiled {changed}"
    meta_good = meta_path.read_bytes()
    assert json.loads(meta_good)["id"] != id_before, "changed sources must give a new id"

    src.write_text(src.read_text() + "\nthis is not C++;\n")
    r = run_cli("build", tiny_project, "--out", out, check=False)
    assert r.returncode == 4, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "compile failed" in r.stderr and "Traceback" not in r.stderr
    assert meta_path.read_bytes() == meta_good, "a failed build replaced the previous variant"
    assert [p.name for p in out.iterdir()] == [_variant(out).name], "no temporary directories left behind"
    run_cli("check", out, "--no-abi")


def test_refuses_to_replace_a_directory_it_did_not_make(built):
    out = built["out"]
    name = _variant(out).name

    shutil.rmtree(out / name)
    (out / name).mkdir()
    (out / name / "precious.txt").write_text("user data")
    r = run_cli("build", built["project"], "--out", out, check=False, env=built["env"])
    assert r.returncode == 2 and "not made by kernel-builder" in r.stderr
    assert (out / name / "precious.txt").read_text() == "user data"
    shutil.rmtree(out / name)
    build_project(built["project"], out, env=built["env"])  # restore for the other tests (no compile)


def test_check_flags_tampering(built, tmp_path):
    out = _copy_out(built, tmp_path)
    assert run_cli("check", out).returncode == 0
    v = _variant(out)
    (v / "__init__.py").write_text((v / "__init__.py").read_text() + "\n# tampered\n")
    r = run_cli("check", out, check=False)
    assert r.returncode == 5
    assert f"{v.name}/__init__.py: digest: hash differs" in r.stdout


def test_check_import_catches_broken_package(built, tmp_path):
    out = _copy_out(built, tmp_path)
    v = _variant(out)
    (v / "__init__.py").write_text("raise ImportError('boom')\n")
    # re-digest so only the import rule can fail
    meta = json.loads((v / "metadata.json").read_text())
    from kernel_builder.build.layout import digest_dir

    meta["digest"] = digest_dir(v)
    (v / "metadata.json").write_text(json.dumps(meta))
    r = run_cli("check", out, "--no-abi", check=False)
    assert r.returncode == 5 and "import" in r.stdout and "boom" in r.stdout


def test_list_variants_explains_skips(tiny_project, private_cache):
    text = (tiny_project / "build.toml").read_text().replace('backends = ["cpu"]', 'backends = ["cpu", "rocm"]')
    text += '\n[kernel.relu_rocm]\nbackend = "rocm"\ndepends = ["torch"]\nsrc = ["relu_rocm/relu.hip"]\nrocm-archs = ["gfx942"]\n'
    (tiny_project / "build.toml").write_text(text)
    r = run_cli("list-variants", tiny_project)
    assert "build  torch" in r.stdout and "skip   rocm: backend rocm is not built" in r.stdout
    assert "not built by this kernel-builder yet" in r.stdout  # the one-line warning for the rocm table


def test_cutlass_dependency_refused_with_its_name(tiny_project, tmp_path, private_cache):
    """Not on PyPI and its source release unreachable (tests/test_cutlass_fetch.py serves one): exit 3, one
    line naming it, the address tried and the variables; nothing installed."""
    text = (tiny_project / "build.toml").read_text().replace('depends = ["torch"]', 'depends = ["torch", "cutlass_3_9"]')
    (tiny_project / "build.toml").write_text(text)
    url = "http://127.0.0.1:9/{tag}.tar.gz"
    r = run_cli("build", tiny_project, "--out", tmp_path / "out", env={"KERNEL_BUILDER_CUTLASS_URL": url}, check=False)
    assert r.returncode == 3, r.stderr
    assert "cutlass_3_9" in r.stderr and "http://127.0.0.1:9/v3.9.0.tar.gz" in r.stderr and "KERNEL_BUILDER_CUTLASS_3_9" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cutlass_from_an_include_dir(tmp_path, monkeypatch, private_cache):
    from kernel_builder.build import deps
    from kernel_builder.errors import ConfigError

    inc = tmp_path / "cutlass39" / "include"
    (inc / "cutlass").mkdir(parents=True)
    (inc / "cutlass" / "version.h").write_text("#define CUTLASS_MAJOR 3\n#define CUTLASS_MINOR 9\n")
    monkeypatch.setenv("KERNEL_BUILDER_CUTLASS_3_9", str(inc))
    settings.reload()
    assert deps.include_dirs("cutlass_3_9", tmp_path / "build.toml", "k") == [str(inc)]
    monkeypatch.setenv("KERNEL_BUILDER_CUTLASS_3_9", str(tmp_path))
    settings.reload()
    with pytest.raises(ConfigError, match="does not hold CUTLASS 3.9"):
        deps.include_dirs("cutlass_3_9", tmp_path / "build.toml", "k")


def test_edition4_is_read_with_a_note(tiny_project, private_cache):
    text = (tiny_project / "build.toml").read_text().replace("edition = 5\n", "")
    (tiny_project / "build.toml").write_text(text)
    r = run_cli("list-variants", tiny_project)
    assert "edition 4" in r.stdout and "build  torch" in r.stdout


def test_stable_abi_is_validated_and_announced(tiny_project, tmp_path, private_cache):
    text = (tiny_project / "build.toml").read_text().replace(
        "[kernel.relu_cpu]", '[torch.stable-abi]\ncpu = "2.10"\n\n[kernel.relu_cpu]')
    (tiny_project / "build.toml").write_text(text)
    r = run_cli("list-variants", tiny_project)
    assert "the stable-ABI variant is built with the matrix" in r.stdout
    bad = text.replace('cpu = "2.10"', 'cpu = "2.7"')
    (tiny_project / "build.toml").write_text(bad)
    r = run_cli("list-variants", tiny_project, check=False)
    assert r.returncode == 2 and "torch.stable-abi.cpu" in r.stderr


def test_noarch_project_becomes_torch_backend_variants(tmp_path, private_cache):
    proj = tmp_path / "pyk"
    (proj / "torch-ext" / "py_relu").mkdir(parents=True)
    (proj / "build.toml").write_text('[general]\nname = "py-relu"\nversion = 2\nedition = 5\nlicense = "MIT"\n'
                                     'backends = ["cpu", "cann"]\n\n[torch-noarch]\n')
    (proj / "torch-ext" / "py_relu" / "__init__.py").write_text(
        "import torch\nfrom ._ops import add_op_namespace_prefix\n\n"
        "def relu(x: torch.Tensor) -> torch.Tensor:\n    return x.clamp_min(0)\n\n__all__ = ['relu']\n")
    out = tmp_path / "out"
    r = build_project(proj, out)
    assert sorted(p.name for p in out.iterdir()) == ["torch-cpu", "torch-npu"], r.stdout
    meta = json.loads((out / "torch-npu" / "metadata.json").read_text())
    assert meta["backend"] == {"type": "cann"} and meta["version"] == 2
    assert not list(out.rglob("*.so"))
    run_cli("check", out)
    code = ("import kernels, torch, sys; k = kernels.get_local_kernel(__import__('pathlib').Path(sys.argv[1])); "
            "assert torch.equal(k.relu(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0])); print(k.__name__)")
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip().startswith("_py_relu_cpu_"), p.stderr


def test_provenance_follows_git(tiny_project, tmp_path, private_cache):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tiny_project), *args], check=True, capture_output=True)

    def kernel_prov():
        build_project(tiny_project, tmp_path / "out")
        return json.loads((_variant(tmp_path / "out") / "metadata.json").read_text())["provenance"]["kernel"]

    git("init", "-q")
    git("add", "build.toml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "only build.toml")
    assert kernel_prov()["dirty"] is True, "sources the build reads are not in the commit"
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "all")
    prov = kernel_prov()
    assert prov["dirty"] is False and len(prov["commit"]) == 40
    (tiny_project / "relu_cpu" / "relu.cpp").write_text((tiny_project / "relu_cpu" / "relu.cpp").read_text() + "//\n")
    assert kernel_prov()["dirty"] is True


def test_concurrent_builds_of_one_project_take_turns(tiny_project, tmp_path, private_cache):
    import subprocess
    import sys

    outs = [tmp_path / "o1", tmp_path / "o2"]
    procs = [subprocess.Popen([sys.executable, "-m", "kernel_builder", "build", str(tiny_project), "--out", str(o)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for o in outs]
    results = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    metas = [(_variant(o) / "metadata.json").read_bytes() for o in outs]
    assert metas[0] == metas[1]
    run_cli("check", outs[0], "--no-abi")


def test_noarch_project_with_all_builds_on_the_host_without_containers(tmp_path, private_cache):
    proj = tmp_path / "pyk"
    (proj / "torch-ext" / "py_relu").mkdir(parents=True)
    (proj / "build.toml").write_text('[general]\nname = "py-relu"\nversion = 1\nedition = 5\nlicense = "MIT"\n'
                                     'backends = ["cpu", "cuda"]\n\n[torch-noarch]\n')
    (proj / "torch-ext" / "py_relu" / "__init__.py").write_text("from ._ops import add_op_namespace_prefix\n")
    listed = run_cli("list-variants", proj, "--all").stdout
    assert "torch-cpu" in listed and "torch-cuda" in listed and "host (pure Python)" in listed
    out = tmp_path / "out"
    # no engine is needed (or started): --engine names one that does not exist
    r = run_cli("build", proj, "--all", "--out", out, "--engine", "no-such-engine-kb")
    assert sorted(p.name for p in out.iterdir()) == ["torch-cpu", "torch-cuda"], r.stdout
    assert "2 built" in r.stdout
    run_cli("check", out)
