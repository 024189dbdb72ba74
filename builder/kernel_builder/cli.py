"""`kernel-builder VERB ...`: wires each verb to the module that does the work, and nothing more.

build -> build.py, list-variants -> build.select, check -> check.py, init -> scaffold.py,
upload -> upload.py, serve -> serve.py (+ hub_store.py), mirror -> mirror.py.
Errors are typed (errors.py): one line on stderr, the class's exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import KernelBuilderError, UsageError


def _project_and_host(directory: str):
    from . import host as host_mod
    from .config import load_project

    project = load_project(Path(directory))
    for note in project.notes:
        print(f"note: {note}")
    return project, host_mod.detect()


def cmd_build(a) -> int:
    from .build import build_variant, make_plan, select

    t0 = time.monotonic()
    project, host = _project_and_host(a.directory)
    options = {"cuda_archs": a.cuda_archs.replace(";", ",").split(",") if a.cuda_archs else None}
    selections = select(project, host, options)
    todo = [s for s in selections if s.variant]
    if a.variant:
        todo = [s for s in todo if s.variant in a.variant]
        missing = set(a.variant) - {s.variant for s in todo}
        if missing:
            raise UsageError(f"--variant {', '.join(sorted(missing))}: not buildable on this host "
                             f"(buildable: {', '.join(s.variant for s in selections if s.variant) or 'none'})")
    for s in selections:
        if not s.variant:
            print(f"skip {s.family}: {s.reason}")
    if not todo:
        raise UsageError(f"{project.file}: nothing to build on this host "
                         f"({'; '.join(f'{s.family}: {s.reason}' for s in selections)})")
    out = Path(a.out) if a.out else project.root / "build"
    plans = [make_plan(project, s, host, options) for s in todo]  # plan all before compiling any
    for s in todo:
        for note in s.notes:
            print(f"note: {s.variant}: {note}")
    print(f"kernel-builder {__version__}: {project.general.name} for torch {host.torch_version} "
          f"({len(plans)} variant{'s' if len(plans) > 1 else ''}), planned in {time.monotonic() - t0:.2f} s")
    for i, plan in enumerate(plans, 1):
        print(f"[{i}/{len(plans)}] {plan.variant}: building {plan.kernel_id} ...", flush=True)
        r = build_variant(plan, host, out, verbose=a.verbose)
        state = "updated" if r["changed"] else "up to date"
        print(f"[{i}/{len(plans)}] {plan.variant}: {state}; compile {r['compile_s']:.2f} s, "
              f"layout {r['layout_s']:.2f} s, {r['size'] / 1024:.0f} KiB -> {out / plan.variant}", flush=True)
    print(f"done in {time.monotonic() - t0:.2f} s")
    return 0


def cmd_list_variants(a) -> int:
    from .build import select

    project, host = _project_and_host(a.directory)
    print(f"host: torch {host.torch_version} (cxx11 ABI {host.cxx11_abi}, CUDA {host.torch_cuda or 'none'}), "
          f"nvcc {host.nvcc_version or 'none'}, {host.arch}-{host.os}")
    for s in select(project, host, {}):
        if s.variant:
            print(f"build  {s.variant}  ({s.family}: {', '.join(k.name for k in s.kernels)})")
            for n in s.notes:
                print(f"       note: {n}")
        else:
            print(f"skip   {s.family}: {s.reason}")
    return 0


def cmd_check(a) -> int:
    from .check import check_tree

    return check_tree(Path(a.build_dir), import_check=not a.no_import, abi_check=not a.no_abi)


def cmd_init(a) -> int:
    from .scaffold import init_project

    path = init_project(a.name, Path(a.dir) if a.dir else Path.cwd() / a.name, a.backends)
    print(f"created {path}: build it with `kernel-builder build {path}`, test it with `pytest {path}/tests`")
    return 0


def _lazy(module: str):
    """The hub verbs import huggingface_hub / werkzeug only when run, so `build` stays fast and works in
    environments (build containers) that have neither."""
    def run(a):
        import importlib

        return importlib.import_module(f".{module}", __package__).run(a)

    return run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernel-builder", description="Build PyTorch kernel projects into "
                                "Hugging Face kernel-hub variants.")
    p.add_argument("--version", action="version", version=f"kernel-builder {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    b = sub.add_parser("build", help="build the variants this host can build")
    b.add_argument("directory", nargs="?", default=".", help="kernel project (with build.toml)")
    b.add_argument("--out", help="output directory (default DIR/build)")
    b.add_argument("--variant", action="append", help="build only this variant (repeatable)")
    b.add_argument("--cuda-archs", help="only these CUDA capabilities, e.g. '9.0' or '8.0,9.0' (development builds)")
    b.add_argument("-v", "--verbose", action="store_true", help="print compiler commands and output")
    b.set_defaults(func=cmd_build)

    lv = sub.add_parser("list-variants", help="show what `build` would build here, and why others are skipped")
    lv.add_argument("directory", nargs="?", default=".")
    lv.set_defaults(func=cmd_list_variants)

    c = sub.add_parser("check", help="verify a built tree (layout, metadata, digest, import, abi3, manylinux_2_28)")
    c.add_argument("build_dir")
    c.add_argument("--no-import", action="store_true", help="skip the import check")
    c.add_argument("--no-abi", action="store_true", help="skip the abi3/manylinux check")
    c.set_defaults(func=cmd_check)

    u = sub.add_parser("upload", help="upload built variants to a hub (huggingface.co or `serve`)")
    u.add_argument("build_dir", help="directory of variant directories (default layout: PROJECT/build)")
    u.add_argument("--repo-id", help="org/name (default: [general.hub] repo-id of the project's build.toml)")
    u.add_argument("--project", help="project directory holding build.toml (default: parent of BUILD_DIR)")
    u.add_argument("--branch", help="branch to upload to (default: v<version> from metadata.json)")
    u.add_argument("--private", action="store_true", help="create the repo private if it does not exist")
    u.add_argument("--create-pr", action="store_true", help="open pull requests instead of pushing (huggingface.co)")
    u.add_argument("--dry-run", action="store_true", help="print the files that would be added and deleted")
    u.add_argument("--endpoint", help="hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    u.add_argument("--output-json", help="write a JSON summary of what was uploaded here")
    u.add_argument("--allow-dirty", action="store_true", help="upload variants built from uncommitted sources")
    u.set_defaults(func=_lazy("upload"))

    s = sub.add_parser("serve", help="run a private kernel hub for sites that cannot reach huggingface.co")
    s.add_argument("root", type=Path, help="directory holding <org>/<name>.git repositories (created if absent)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token-file", type=Path, help="write tokens, one per line ('TOKEN [USER]'); none: open hub")
    s.add_argument("--trusted-org", action="append", default=[], help="org reported as trustedKernelPublisher")
    s.add_argument("--read-token", action="store_true", help="require a token for reads too")
    s.set_defaults(func=_lazy("serve"))

    # tokens come from SRC_HF_TOKEN / HF_TOKEN, never the command line (shell history, `ps`)
    m = sub.add_parser("mirror", help="copy a published version from one hub to another")
    m.add_argument("repo_id", help="org/name on the source hub")
    m.add_argument("--version", type=int, required=True, help="kernel version N (branch vN)")
    m.add_argument("--from", dest="src", required=True, help="source hub URL, e.g. https://huggingface.co")
    m.add_argument("--to", dest="dst", required=True, help="destination hub URL, e.g. http://hub.internal:8000")
    m.add_argument("--to-repo-id", help="repo id on the destination (default: the same)")
    m.add_argument("--variant", action="append", help="copy only this variant (repeatable)")
    m.add_argument("--dry-run", action="store_true")
    m.add_argument("--output-json")
    m.set_defaults(func=_lazy("mirror"))

    i = sub.add_parser("init", help="scaffold a new kernel project")
    i.add_argument("name")
    i.add_argument("--dir", help="where to create it (default ./NAME)")
    i.add_argument("--backends", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    i.set_defaults(func=cmd_init)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return a.func(a)
    except KernelBuilderError as e:
        print(f"kernel-builder: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kernel-builder: interrupted", file=sys.stderr)
        return 130
