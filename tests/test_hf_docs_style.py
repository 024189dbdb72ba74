"""A kernel written exactly the way Hugging Face's kernel-builder docs show one must build and load.

tests/projects/hf_docs_style/ uses the docs' conventions verbatim: `#include "registration.h"` (which
the builder supplies), `TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops)`, `REGISTER_EXTENSION(...)`,
a header that includes <torch/torch.h>, and `from ._ops import ops` in the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROJECT = HERE / "projects" / "hf_docs_style"

# Loaded in a child process: a kernel's op namespace can be registered only once per process, so
# loading it into the pytest process could abort a later test that loads the same build.
CHECK = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    import kernels

    k = kernels.get_local_kernel(Path(sys.argv[1]))
    torch.manual_seed(0)
    for shape in [(1000,), (7, 33), (3, 4, 5)]:
        x = torch.randn(*shape)
        y = k.relu(x)
        assert y.shape == x.shape and y.dtype == x.dtype, (y.shape, y.dtype)
        torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)
    x = torch.randn(257)
    torch.testing.assert_close(k.leaky_relu(x, 0.2), torch.nn.functional.leaky_relu(x, 0.2))
    out = torch.empty(64)
    k.ops.relu(out, x[:64])
    torch.testing.assert_close(out, torch.relu(x[:64]), rtol=0, atol=0)
    print("KERNEL-OK", k.__name__)
""")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KERNEL_BUILDER_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "builder"), env.get("PYTHONPATH")]))
    return env


def test_hf_docs_style_project_builds_and_loads(tmp_path: Path):
    pytest.importorskip("kernels", reason="the `kernels` loader is needed to load the built variant")
    project = tmp_path / "hf_docs_style"
    shutil.copytree(PROJECT, project)
    out = tmp_path / "out"
    env = _env(tmp_path)

    proc = subprocess.run(
        [sys.executable, "-m", "kernel_builder", "build", str(project), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800,
    )
    report = f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stdout + proc.stderr, report

    so_files = sorted(out.rglob("*.so"))
    assert so_files, f"no extension module under {out}\n{report}"
    for so in so_files:
        assert so.name.endswith(".abi3.so"), f"{so} is not built with the Python limited API (.abi3.so)"

    metas = sorted(out.rglob("metadata.json"))
    assert metas, f"no metadata.json under {out}"
    for m in metas:
        meta = json.loads(m.read_text())
        assert meta["name"] == "relu-docs" and meta["version"] == 1, meta
        assert meta["backend"]["type"] == "cpu", meta

    check = subprocess.run([sys.executable, "-c", CHECK, str(out)], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=600)
    assert check.returncode == 0 and "KERNEL-OK" in check.stdout, (
        f"loading/checking the built kernel failed (exit {check.returncode})\n"
        f"--- stdout ---\n{check.stdout}\n--- stderr ---\n{check.stderr}")
