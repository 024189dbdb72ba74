"""`kernel-builder init NAME`: a new project from templates/init, one that builds and passes its tests."""

from __future__ import annotations

from pathlib import Path

from .config import NAME_RE
from .errors import UsageError
from .render import render


def init_project(name: str, dest: Path, backends: list[str]) -> Path:
    if not NAME_RE.match(name):
        raise UsageError(f"init: name {name!r}: lowercase letters, digits and dashes, starting with a letter")
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"init: {dest} exists and is not empty; choose another --dir")
    module = name.replace("-", "_")
    ctx = {"name": name, "module": module, "backends": list(dict.fromkeys(backends))}
    files = {
        "build.toml": "init/build.toml.j2",
        "torch-ext/torch_binding.h": "init/torch_binding.h.j2",
        "torch-ext/torch_binding.cpp": "init/torch_binding.cpp.j2",
        f"torch-ext/{module}/__init__.py": "init/__init__.py.j2",
        f"torch-ext/{module}/layers.py": "init/layers.py.j2",
        f"tests/test_{module}.py": "init/test_kernel.py.j2",
    }
    if "cpu" in backends:
        files[f"{module}_cpu/{module}.cpp"] = "init/kernel_cpu.cpp.j2"
    if "cuda" in backends:
        files[f"{module}_cuda/{module}.cu"] = "init/kernel_cuda.cu.j2"
    rendered = {rel: render(tpl, **ctx) for rel, tpl in files.items()}  # render all before writing any
    for rel, text in rendered.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (dest / ".gitignore").write_text("/build/\n__pycache__/\n")
    return dest
