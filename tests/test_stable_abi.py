"""torch-stable-abi variants: built once against torch's stable ABI, loaded on any newer torch; `check`
rejects a library that reaches past the C shim into torch's C++ API."""

from __future__ import annotations

import shutil
import subprocess
import sys


from conftest import REPO, build_project, run_cli

PROJECT = REPO / "tests" / "projects" / "stable_abi"
VARIANT = "torch-stable-abi210-cpu-x86_64-linux"


def test_stable_variant_builds_checks_and_loads(tmp_path, conformance):
    out = tmp_path / "build"
    r = build_project(PROJECT, out, "--stable-abi", "2.10")
    assert VARIANT in r.stdout and [p.name for p in out.iterdir()] == [VARIANT]
    run_cli("check", out)
    code = (f"import torch, kernels; k = kernels.get_local_kernel(__import__('pathlib').Path({str(out)!r})); "
            "x = torch.randn(1000); y = k.scale(x, 2.5); "
            "assert torch.equal(y, x * 2.5), (y - x * 2.5).abs().max(); print('ok', k.__name__)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stdout + p.stderr
    # the judge: the real loader picks the stable variant on this (newer) torch
    c = subprocess.run([sys.executable, str(conformance), str(out), "--no-layer", "--no-transformers"],
                       capture_output=True, text=True, timeout=900)
    assert c.returncode == 0, c.stdout[-3000:] + c.stderr[-2000:]


def test_check_names_a_symbol_outside_the_stable_abi(tmp_path):
    proj = tmp_path / "proj"
    shutil.copytree(PROJECT, proj)
    src = proj / "scale_cpu" / "scale.cpp"
    text = src.read_text()
    # torch's own headers refuse C++-API includes under TORCH_TARGET_VERSION; a hand-written declaration
    # slips past them, and only the symbol check catches it
    text = text.replace("#include <torch/headeronly/util/Exception.h>\n",
                        "#include <torch/headeronly/util/Exception.h>\n#include <string>\n"
                        "namespace c10 { std::string get_backtrace(size_t, size_t, bool); }\n")
    text = text.replace("const float f = static_cast<float>(factor);",
                        "const float f = static_cast<float>(factor) + 0.f * c10::get_backtrace(0, 1, true).size();")
    src.write_text(text)
    out = tmp_path / "build"
    build_project(proj, out, "--stable-abi", "2.10")
    r = run_cli("check", out, check=False)
    assert r.returncode == 5
    assert "stable-abi: uses c10::get_backtrace" in r.stdout and "outside the stable ABI" in r.stdout


def test_stable_abi_newer_than_torch_is_refused(tmp_path):
    proj = tmp_path / "proj"
    shutil.copytree(PROJECT, proj)
    f = proj / "build.toml"
    f.write_text(f.read_text().replace('cpu = "2.10"', 'cpu = "2.99"'))
    r = run_cli("build", proj, "--out", tmp_path / "out", "--stable-abi", "2.99", check=False)
    assert r.returncode == 2 and "older than the ABI it targets" in r.stderr
    assert not (tmp_path / "out").exists()


def test_plain_host_build_of_a_stable_project_notes_the_matrix(tmp_path):
    import platform

    import torch

    maj, mnr = torch.__version__.split(".")[:2]
    r = build_project(PROJECT, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"torch{maj}{mnr}-cxx11-cpu-{platform.machine()}-linux"]
    assert "the stable-ABI variant is built with the matrix" in r.stdout
