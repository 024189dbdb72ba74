"""`kernel-builder init NAME`: a new project from templates/init, one that builds and passes its tests."""

from __future__ import annotations

from pathlib import Path

from .. import backends
from .config import NAME_RE
from ..errors import UsageError
from ..build.render import render


def init_project(name: str, dest: Path, families: list[str]) -> Path:
    if not NAME_RE.match(name):
        raise UsageError(f"init: name {name!r}: lowercase letters, digits and dashes, starting with a letter")
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"init: {dest} exists and is not empty; choose another --dir")
    module = name.replace("-", "_")
    families = list(dict.fromkeys(families))
    kernels = []
    for family in families:
        path, template = backends.get(family).scaffold
        kernels.append({"name": f"{module}_{family}", "backend": family, "src": path.format(module=module),
                        "template": template})
    ctx = {"name": name, "module": module, "backends": families, "kernels": kernels}
    files = {
        "build.toml": "init/build.toml.j2",
        "torch-ext/torch_binding.h": "init/torch_binding.h.j2",
        "torch-ext/torch_binding.cpp": "init/torch_binding.cpp.j2",
        f"torch-ext/{module}/__init__.py": "init/__init__.py.j2",
        f"torch-ext/{module}/layers.py": "init/layers.py.j2",
        f"tests/test_{module}.py": "init/test_kernel.py.j2",
    }
    files.update({k["src"]: k["template"] for k in kernels})
    rendered = {rel: render(tpl, **ctx) for rel, tpl in files.items()}  # render all before writing any
    for rel, text in rendered.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (dest / ".gitignore").write_text("/build/\n__pycache__/\n")
    return dest
