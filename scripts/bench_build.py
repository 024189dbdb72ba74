#!/usr/bin/env python3
"""Build-speed benchmark: cold build vs a bare torch.utils.cpp_extension build of the same sources,
no-op rebuild time, and what a one-file edit recompiles.

    python scripts/bench_build.py [PROJECT] [--repeat 3]

PROJECT defaults to kernels_src/activation. Every build runs on a fresh copy with a private cache, in
a child process, timed by wall clock; the figures and ratios are printed last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BARE_SETUP = textwrap.dedent("""
    import sys
    from setuptools import setup
    from torch.utils.cpp_extension import BuildExtension, CppExtension
    sources, includes, out, tmp = sys.argv[1].split(";"), sys.argv[2].split(";"), sys.argv[3], sys.argv[4]
    setup(name="bare", script_args=["build_ext", "--build-lib", out, "--build-temp", tmp],
          ext_modules=[CppExtension("_bare_ext", sources, include_dirs=includes, py_limited_api=True,
                                    extra_compile_args=["-O3", "-DCPU_KERNEL", "-DTORCH_EXTENSION_NAME=_bare_ext"])],
          cmdclass={"build_ext": BuildExtension})
""")


def timed(cmd, env=None, cwd=None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt


def objects(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("obj/**/*.o")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", default=str(REPO / "kernels_src" / "activation"))
    ap.add_argument("--repeat", type=int, default=3, help="cold builds of each kind (median is reported)")
    a = ap.parse_args()
    kb = [sys.executable, "-m", "kernel_builder"]
    results: dict[str, list[float]] = {"kernel-builder cold": [], "bare cpp_extension cold": []}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for i in range(a.repeat):
            proj, cache = tmp / f"p{i}", tmp / f"cache{i}"
            shutil.copytree(a.project, proj, ignore=shutil.ignore_patterns("build", "__pycache__"))
            env = dict(os.environ, KERNEL_BUILDER_CACHE=str(cache))
            results["kernel-builder cold"].append(timed(kb + ["build", proj, "--out", tmp / f"out{i}"], env))
            # the bare build compiles the same CPU sources with the same binding, in one extension
            from kernel_builder.project.config import load_project

            project = load_project(proj)
            gen = next(cache.rglob("gen"))
            sources = [str(proj / s) for k in project.kernels_for("cpu") for s in k.sources]
            sources += [str(proj / s) for s in project.torch.src if s.endswith(".cpp")]
            includes = [str(gen), str(proj), str(proj / "torch-ext")]
            results["bare cpp_extension cold"].append(timed(
                [sys.executable, "-c", BARE_SETUP, ";".join(sources), ";".join(includes), tmp / f"bare{i}",
                 tmp / f"baretmp{i}"], cwd=tmp))
            print(f"run {i + 1}: kernel-builder {results['kernel-builder cold'][-1]:.1f} s, "
                  f"bare {results['bare cpp_extension cold'][-1]:.1f} s", flush=True)

        proj, cache = tmp / "p0", tmp / "cache0"
        env = dict(os.environ, KERNEL_BUILDER_CACHE=str(cache))
        noop = [timed(kb + ["build", proj, "--out", tmp / "out0"], env) for _ in range(5)]
        before = objects(cache)
        src = proj / next(s for k in load_project(proj).kernels_for("cpu") for s in k.sources)
        src.write_text(src.read_text() + "\n// benchmark edit\n")
        edit = timed(kb + ["build", proj, "--out", tmp / "out0"], env)
        after = objects(cache)
        recompiled = sorted(Path(k).name for k in after if after[k] != before.get(k))

    ours, bare = (statistics.median(results[k]) for k in ("kernel-builder cold", "bare cpp_extension cold"))
    print()
    print(f"project: {a.project}")
    print(f"cold build, kernel-builder (median of {a.repeat}): {ours:8.2f} s")
    print(f"cold build, bare cpp_extension (median of {a.repeat}): {bare:8.2f} s")
    print(f"ratio kernel-builder / bare: {ours / bare:.3f}x  (target <= 1.10x)")
    print(f"no-op rebuild (median of 5, whole CLI process): {statistics.median(noop):.3f} s  (target <= 1 s)")
    print(f"one-file edit ({src.name}) rebuild: {edit:.2f} s, recompiled: {', '.join(recompiled)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
