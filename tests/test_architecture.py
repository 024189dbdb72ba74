"""The package's shape, held by tests: no import circle, no backend-name branch outside backends/, and a
backend that is one module plus one registry entry (a toy one is added here and builds a variant)."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import pytest

from kernel_builder import backends
from kernel_builder.variants import FAMILIES, UNIVERSAL

PACKAGE = Path(__file__).resolve().parent.parent / "builder" / "kernel_builder"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every package module `path` imports: top-level, function-local and TYPE_CHECKING imports alike,
    plus the packages a dotted import runs first (importing a.b.c runs a and a.b)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate != me:
                    found.add(candidate)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def test_no_import_circle_anywhere_in_the_package():
    graph = import_graph()
    assert "kernel_builder.build.plan" in graph and "kernel_builder.backends.cann" in graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_planning_imports_nothing_that_acts():
    """plan.py decides; it must not reach the modules that build, run containers or talk to hubs."""
    graph = import_graph()
    seen, todo = set(), ["kernel_builder.build.plan"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    doers = ["build.staging", "build.compile", "build.layout", "matrix.containers", "matrix.engine",
             "matrix.images", "hub.upload", "hub.serve"]
    for doer in doers:
        assert f"kernel_builder.{doer}" in graph, f"kernel_builder.{doer} moved: update this test"
        assert f"kernel_builder.{doer}" not in seen, f"plan.py reaches kernel_builder.{doer}"


# What each folder may not import (its __init__ docstring says the same in words).
FORBIDDEN = {"project": ("matrix", "hub"), "backends": ("matrix", "hub"), "build": ("matrix", "hub"),
             "matrix": ("hub",), "hub": ("matrix",)}


def test_each_folder_imports_only_what_its_docstring_allows():
    graph = import_graph()
    broken = []
    for module, imported in sorted(graph.items()):
        folder = module.split(".")[1] if module.count(".") >= 1 else ""
        for other in sorted(imported):
            if other.count(".") >= 1 and other.split(".")[1] in FORBIDDEN.get(folder, ()):
                broken.append(f"{module} imports {other}")
    assert not broken, "\n".join(broken)
    for folder in FORBIDDEN:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{folder}/__init__.py does not say what it may import"


def test_every_verb_names_the_module_that_does_it():
    """cli.py's docstring maps each verb to its module; a moved module must be renamed there too."""
    from kernel_builder.cli import parser

    doc = ast.get_docstring(ast.parse((PACKAGE / "cli.py").read_text()))
    verbs = parser()._subparsers._group_actions[0].choices
    for verb in verbs:
        line = next((ln for ln in doc.splitlines() if ln.strip().startswith(verb + " ")), None)
        assert line, f"cli.py's docstring does not map the verb {verb}"
        for path in re.findall(r"[a-z_]+/[a-z_]+\.py|[a-z_]+/(?=\s|$|,)", line):
            assert (PACKAGE / path).exists(), f"cli.py's docstring names {path} for {verb}: no such file"


NAMES = set(FAMILIES) | {f.noarch for f in FAMILIES.values()} | {UNIVERSAL}


def _names_in(node) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(e) for e in node.elts)) if node.elts else set()
    return set()


def test_no_backend_name_is_compared_outside_backends():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "backends" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            hits = set()
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    hits |= _names_in(operand)
            elif isinstance(node, ast.match_case):
                hits |= {n.value.value for n in ast.walk(node.pattern)
                         if isinstance(n, ast.MatchValue) and isinstance(n.value, ast.Constant)} & NAMES
            if hits:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {sorted(hits)}")
    assert not offenders, "backend names compared outside backends/:\n" + "\n".join(offenders)


def test_the_checker_sees_a_comparison():
    tree = ast.parse('if family == "cuda" or b in ("cpu", "x"):\n    pass\n')
    hits = [h for n in ast.walk(tree) if isinstance(n, ast.Compare) for o in [n.left, *n.comparators]
            for h in _names_in(o)]
    assert sorted(hits) == ["cpu", "cuda"]


# --------------------------------------------------------------------------------------------------
# A new backend: a module of its own (here, a class in this test) plus one registry entry
# --------------------------------------------------------------------------------------------------


TOY_BINDING = r"""
#include <torch/library.h>
#include "registration.h"
#include "toy.h"
TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("twice(Tensor! out, Tensor x) -> ()");
  ops.impl("twice", torch::kCPU, &twice);
}
REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
"""

TOY_KERNEL = r"""
#include <torch/all.h>
#ifndef TOY_KERNEL
#error "the toy backend's define is missing"
#endif
void twice(torch::Tensor &out, torch::Tensor const &x) { out.copy_(x * TOY_FACTOR); }
"""


def _toy_backend():
    from kernel_builder.backends.base import CppExtensionBackend, compiled_variant
    from kernel_builder.variants import backend_string

    class Toy(CppExtensionBackend):
        """A pretend ROCm: compiled by the host C++ compiler, with its own kernel key and define."""

        family = "rocm"
        extension = "CppExtension"
        kernel_keys = frozenset({"rocm-archs", "toy-factor"})

        def read_kernel(self, reader, prefix, table):
            archs = reader.str_list(table, "rocm-archs", prefix, non_empty=True)
            factor = table.get("toy-factor", 2)
            if not isinstance(factor, int) or isinstance(factor, bool):
                reader.fail(f"{prefix}.toy-factor", "must be an integer", factor)
            return {"rocm-archs": archs, "toy-factor": factor}

        def variant(self, host):
            return compiled_variant(host, backend_string(self.family, "6.4"))

        def can_load(self, variant, host):
            return True  # it is CPU code in disguise

        def defines(self):
            return ["-DTOY_KERNEL"]

        def kernel_flags(self, project, kernel, host, options):
            return {"cxx": [f"-DTOY_FACTOR={kernel.options['toy-factor']}"], "nvcc": []}

        def archs(self, project, host, options):
            return sorted({a for k in project.kernels_for(self.family) for a in k.options["rocm-archs"]})

    return Toy()


@pytest.fixture
def toy_backend():
    assert not backends.is_built("rocm")
    backends.register("rocm", _toy_backend())
    try:
        yield
    finally:
        backends.unregister("rocm")
    assert not backends.is_built("rocm")


def _toy_project(root: Path, factor: str = "3") -> Path:
    (root / "torch-ext" / "toy").mkdir(parents=True)
    (root / "toy_rocm").mkdir()
    (root / "build.toml").write_text(textwrap.dedent(f"""\
        [general]
        name = "toy"
        version = 1
        edition = 5
        license = "MIT"
        backends = ["rocm"]

        [torch]
        src = ["torch-ext/torch_binding.cpp", "torch-ext/toy.h"]

        [kernel.toy_rocm]
        backend = "rocm"
        depends = ["torch"]
        src = ["toy_rocm/toy.cpp"]
        rocm-archs = ["gfx942", "gfx90a"]
        toy-factor = {factor}
        """))
    (root / "torch-ext" / "torch_binding.cpp").write_text(TOY_BINDING)
    (root / "torch-ext" / "toy.h").write_text("#pragma once\n#include <torch/all.h>\n"
                                              "void twice(torch::Tensor &out, torch::Tensor const &x);\n")
    (root / "toy_rocm" / "toy.cpp").write_text(TOY_KERNEL)
    (root / "torch-ext" / "toy" / "__init__.py").write_text(
        "from ._ops import ops\n\n\ndef twice(out, x):\n    ops.twice(out, x)\n    return out\n")
    return root


def test_a_toy_backend_builds_a_variant_without_touching_another_module(tmp_path, private_cache, toy_backend):
    import subprocess
    import sys

    from kernel_builder.build.check import check_tree
    from kernel_builder.project.config import load_project
    from kernel_builder.errors import ConfigError
    from kernel_builder.build.host import detect
    from kernel_builder.project.options import BuildOptions
    from kernel_builder.build.plan import make_plan, select
    from kernel_builder.build.staging import build_variant

    project = load_project(_toy_project(tmp_path / "toy"))
    assert project.kernels[0].options == {"rocm-archs": ("gfx942", "gfx90a"), "toy-factor": 3}
    assert not project.notes  # a built backend now, not "parsed and skipped"
    host = detect()
    (sel,) = select(project, host, BuildOptions())
    assert sel.variant is not None and sel.variant.backend == "rocm64", sel.reason
    out = tmp_path / "out"
    report = build_variant(make_plan(project, sel, host, BuildOptions()), host, out)
    vdir = out / sel.variant.name
    meta = json.loads((vdir / "metadata.json").read_text())
    assert report.changed and meta["backend"] == {"type": "rocm", "archs": ["gfx90a", "gfx942"]}
    assert meta["id"].startswith("_toy_rocm_") and (vdir / f"{meta['id']}.abi3.so").is_file()
    assert check_tree(out, import_check=True, abi_check=False) == 0  # the loader's metadata parser + import
    probe = ("import importlib.util, sys, torch\n"
             "spec = importlib.util.spec_from_file_location('toy', sys.argv[1] + '/__init__.py', "
             "submodule_search_locations=[sys.argv[1]])\n"
             "m = importlib.util.module_from_spec(spec); sys.modules['toy'] = m; spec.loader.exec_module(m)\n"
             "x = torch.arange(4.0); print(m.twice(torch.empty(4), x).tolist())\n")
    r = subprocess.run([sys.executable, "-c", probe, str(vdir)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "[0.0, 3.0, 6.0, 9.0]", r.stderr[-2000:]
    bad = _toy_project(tmp_path / "bad", factor='"three"')
    with pytest.raises(ConfigError, match="kernel.toy_rocm.toy-factor: must be an integer"):
        load_project(bad)


def test_without_the_toy_rocm_tables_are_parsed_and_skipped(tmp_path):
    from kernel_builder.project.config import load_project

    root = _toy_project(tmp_path / "toy")
    text = (root / "build.toml").read_text().replace("toy-factor = 3\n", "")
    (root / "build.toml").write_text(text)
    project = load_project(root)
    assert any("not built by this kernel-builder yet" in n for n in project.notes)


# --------------------------------------------------------------------------------------------------
# Planning has no side effects: no downloads, no writes
# --------------------------------------------------------------------------------------------------


def _activation_with_cutlass(tmp_path: Path) -> Path:
    import shutil

    from conftest import KERNELS_SRC

    root = tmp_path / "activation"
    shutil.copytree(KERNELS_SRC / "activation", root, ignore=shutil.ignore_patterns("build", "__pycache__"))
    text = (root / "build.toml").read_text()
    head, sep, tail = text.partition("[kernel.activation_cuda]")
    assert sep, "kernels_src/activation has no [kernel.activation_cuda] table"
    (root / "build.toml").write_text(head + sep + tail.replace('depends = ["torch"]', 'depends = ["torch", "cutlass_3_5"]', 1))
    return root


def test_list_variants_and_ci_plan_a_cutlass_kernel_without_fetching_it(tmp_path, private_cache):
    from conftest import run_cli

    root = _activation_with_cutlass(tmp_path)
    offline = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    r = run_cli("list-variants", root, "--all", env=offline)
    assert "torch211-cxx11-cu130-x86_64-linux" in r.stdout
    run_cli("ci", "github", root, "-o", tmp_path / "wf.yml", env=offline)
    run_cli("build", root, "--all", "--dry-run", "--variant", "torch211-*-cu130-*", "--base-image", "local/x",
            env=offline, check=False)  # needs no engine to plan; the engine may be missing here
    assert not (private_cache / "deps").exists() and not (private_cache / "builds").exists()


def test_make_plan_writes_nothing(tmp_path, private_cache):
    from kernel_builder.matrix import table as matrix
    from kernel_builder.project.config import load_project
    from kernel_builder.project.options import BuildOptions
    from kernel_builder.build.plan import make_plan, select

    project = load_project(_activation_with_cutlass(tmp_path))
    env = next(e for e in matrix.load().envs if e.backend == "cuda")
    host = env.host()
    (sel,) = [s for s in select(project, host, BuildOptions()) if s.family == "cuda"]
    plan = make_plan(project, sel, host, BuildOptions())
    assert plan.variant.name.endswith("-cu130-x86_64-linux") and plan.archs
    assert [d.name for d in plan.deps] == ["cutlass_3_5"] and plan.deps[0].pinned == "3.5.1.0"
    assert any(plan.deps[0].include in g["include_dirs"] for g in plan.groups)
    assert not plan.workdir.exists() and not (private_cache / "deps").exists()
    assert make_plan(project, sel, host, BuildOptions()).fingerprint == plan.fingerprint


def test_an_unknown_backend_is_a_one_line_usage_error():
    from kernel_builder.errors import UsageError

    with pytest.raises(UsageError, match=r"^backend 'nope' is not built by kernel-builder \(built: cpu, cuda, cann"):
        backends.get("nope")


def test_only_tools_runs_programs():
    """One way to run a tool (tools.py): no other module imports subprocess or calls os.system/popen."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "tools.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "subprocess" for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and node.module == "subprocess":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: imports subprocess")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("system", "popen", "execv", "execvp", "spawnv"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: os.{node.attr}")
    assert not offenders, "\n".join(offenders)


def test_only_settings_reads_the_environment():
    """Every environment variable is a field of settings.Settings: elsewhere os.environ is only handed on
    whole to a child process (`dict(os.environ, ...)`), never read."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "settings.py":
            continue
        tree = ast.parse(path.read_text())
        handed_on = {id(c.args[0]) for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                     and c.func.id == "dict" and c.args}
        for node in ast.walk(tree):
            is_environ = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os"
            if is_environ and id(node) not in handed_on:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: os.{node.attr}")
    assert not offenders, "\n".join(offenders)


MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_a_screen():
    """Files small enough to read in one sitting start with functions that fit on a screen: none in builder/
    is longer than MAX_FUNCTION_LINES (decorators excluded, docstring included)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.name} has {lines} lines")
    assert not long, "\n".join(long)
