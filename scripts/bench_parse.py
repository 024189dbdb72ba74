"""How long build.toml takes to read as it grows: N kernel tables, loaded and planned (`list-variants`).

    python scripts/bench_parse.py [--tables 1000 10000] [--repeat 3]

Prints, for each N, the best of `--repeat` runs of load_project (tomllib, the limits, every key and
path checked) and of `kernel-builder list-variants` in a fresh interpreter (import, host, planning,
which looks up a line per kernel). Reading used to be quadratic in the number of tables (a line search
per key: 1,000 tables took 10 s, 2,000 took 42 s); issue 13 asks for 10,000 in under 2 s. A figure,
not a test: it depends on the machine and how busy it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "builder"))

from kernel_builder.project.config import load_project  # noqa: E402

HEAD = """[general]
name = "many"
version = 1
edition = 5
license = "Apache-2.0"
backends = ["cpu"]

[torch]
src = ["torch-ext/torch_binding.cpp"]
"""
TABLE = """
[kernel.k{i}]
backend = "cpu"
depends = ["torch"]
src = ["k/kernel{j}.cpp"]
cxx-flags = ["-O3", "-DK{i}"]
"""


def make_project(root: Path, tables: int) -> Path:
    """A project of `tables` cpu kernel tables over 100 small sources (a real file each names)."""
    (root / "k").mkdir(parents=True)
    for j in range(min(tables, 100)):
        (root / "k" / f"kernel{j}.cpp").write_text(f"void k{j}() {{}}\n")
    (root / "torch-ext" / "many").mkdir(parents=True)
    (root / "torch-ext" / "torch_binding.cpp").write_text("// binding\n")
    (root / "torch-ext" / "many" / "__init__.py").write_text("")
    (root / "build.toml").write_text(HEAD + "".join(TABLE.format(i=i, j=i % 100) for i in range(tables)))
    return root


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "builder"), os.environ.get("PYTHONPATH")])))
    print(f"{'tables':>7} {'bytes':>10} {'load_project':>13} {'list-variants':>14}")
    for n in a.tables:
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp) / "many", n)
            env["KERNEL_BUILDER_CACHE"] = str(Path(tmp) / "cache")
            size = (project / "build.toml").stat().st_size
            loaded = best(lambda: load_project(project), a.repeat)
            assert len(load_project(project).kernels) == n

            def listed():
                subprocess.run([sys.executable, "-m", "kernel_builder", "list-variants", str(project)], env=env,
                               check=True, capture_output=True, timeout=600)

            print(f"{n:>7} {size:>10} {loaded:>12.2f}s {best(listed, a.repeat):>13.2f}s", flush=True)
            shutil.rmtree(project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
