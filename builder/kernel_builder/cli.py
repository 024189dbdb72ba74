"""`kernel-builder VERB ...`: wires each verb to the folder that does the work, and nothing more.

build          build/plan.py (what) + build/staging.py (doing), backends/ (per family)
build --all    matrix/table.py (which environments) + matrix/containers.py (one container each)
list-variants  build/plan.py (this host), matrix/table.py (--all)
images         matrix/images.py + matrix/engine.py
ci             matrix/ci.py
check          build/check.py
init           project/scaffold.py
upload         hub/upload.py
serve          hub/serve.py + hub/store.py
mirror         hub/mirror.py
Errors are typed (errors.py): one line on stderr, the class's exit code; a traceback only with --debug."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from . import __version__, backends
from .errors import INTERRUPTED, UNEXPECTED, CompileError, EnvironmentProblem, KernelBuilderError, UsageError
from .project.options import BuildOptions


def _project_and_host(directory: str):
    from .build import host as host_mod
    from .project.config import load_project

    project = load_project(Path(directory))
    for note in project.notes:
        print(f"note: {note}")
    return project, host_mod.detect()


def _options(a) -> BuildOptions:
    archs = getattr(a, "cuda_archs", None)
    twins = [f for f in backends.TWINS if getattr(a, f"{f}_twin", False)]
    if len(twins) > 1:
        raise UsageError(f"{' and '.join(f'--{f}-twin' for f in twins)}: one twin per build")
    twin = twins[0] if twins else None
    socs = tuple(getattr(a, "soc", None) or ())
    if socs and not twin:
        raise UsageError(f"--soc: only a twin build ({', '.join(f'--{f}-twin' for f in backends.TWINS)}) takes "
                         "target chips")
    if twin and getattr(a, "all", False):
        raise UsageError(f"--{twin}-twin builds on this host; it does not combine with --all")
    return BuildOptions(cuda_archs=tuple(archs.replace(";", ",").split(",")) if archs else None,
                        stable_abi=getattr(a, "stable_abi", None) or None, twin=twin, twin_targets=socs)


def _matrix(a):
    from .matrix import table as matrix

    return matrix.load(Path(a.matrix) if a.matrix else None, a.base_image)


def cmd_build(a) -> int:
    if a.all:
        return cmd_build_all(a)
    from .matrix.table import matches
    from .build.plan import make_plan, select
    from .build.staging import build_variant

    t0 = time.monotonic()
    project, host = _project_and_host(a.directory)
    options = _options(a)
    selections = select(project, host, options)
    todo = [s for s in selections if s.variant]
    if a.variant:
        todo = [s for s in todo if matches(s.variant.name, a.variant)]
        if not todo:
            raise UsageError(f"--variant {', '.join(a.variant)}: not buildable on this host "
                             f"(buildable: {', '.join(s.variant.name for s in selections if s.variant) or 'none'}; "
                             "`--all` builds the matrix in containers)")
    for s in selections:
        if not s.variant:
            print(f"skip {s.family}: {s.reason}")
    if not todo:
        raise UsageError(f"{project.file}: nothing to build on this host "
                         f"({'; '.join(f'{s.family}: {s.reason}' for s in selections)})")
    out = Path(a.out) if a.out else project.root / ("build-twin" if options.twin else "build")
    if options.twin:
        _refuse_to_replace_real_builds(out, todo)
    plans = [make_plan(project, s, host, options) for s in todo]  # plan all before compiling any
    for s in todo:
        for note in s.notes:
            print(f"note: {s.variant}: {note}")
    print(f"kernel-builder {__version__}: {project.general.name} for torch {host.torch_version} "
          f"({len(plans)} variant{'s' if len(plans) > 1 else ''}), planned in {time.monotonic() - t0:.2f} s")
    for i, plan in enumerate(plans, 1):
        print(f"[{i}/{len(plans)}] {plan.variant}: building {plan.kernel_id} ...", flush=True)
        r = build_variant(plan, host, out, verbose=a.verbose)
        state = "updated" if r.changed else "up to date"
        print(f"[{i}/{len(plans)}] {plan.variant}: {state}; compile {r.compile_s:.2f} s, "
              f"layout {r.layout_s:.2f} s, {r.size / 1024:.0f} KiB -> {out / plan.variant.name}", flush=True)
    print(f"done in {time.monotonic() - t0:.2f} s")
    return 0


def _refuse_to_replace_real_builds(out: Path, todo) -> None:
    """A twin is named like this torch's real CPU variant: it must never silently take that build's place."""
    import json

    from .build.check import twin_of

    for s in todo:
        meta = out / s.variant.name / "metadata.json"
        try:
            real = not twin_of(json.loads(meta.read_text()))
        except (OSError, ValueError):
            continue  # nothing there (or not ours to judge): the build writes a new directory
        if real:
            raise UsageError(f"{out / s.variant.name}: holds a real {s.variant.name} build, which a twin build "
                             "would replace; choose another --out (the default for twin builds is DIR/build-twin)")


def cmd_build_all(a) -> int:
    from .matrix import containers, table as matrix
    from .project.config import load_project
    from .matrix.engine import Engine

    t0 = time.monotonic()
    project = load_project(Path(a.directory))
    for note in project.notes:
        print(f"note: {note}")
    m = _matrix(a)
    options = _options(a)
    entries = matrix.pick(matrix.expand(project, m, options), a.variant)
    if not entries:
        raise UsageError(f"{project.file}: the build matrix ({m.file}) gives this project no variant; "
                         f"see `kernel-builder list-variants {a.directory} --all`")
    engine = Engine(a.engine) if any(e.env for e in entries) else None
    if engine and not a.dry_run:
        engine.ping()
    out = Path(a.out) if a.out else project.root / "build"
    entries, elsewhere = containers.here_and_elsewhere(entries, None if a.dry_run else engine)
    if a.dry_run:
        runner = containers.Runner(project, out, engine, options)
        for e in entries + elsewhere:
            print("\n".join(runner.command_lines(e)))
        return 0
    if not entries:
        raise EnvironmentProblem(f"{elsewhere[0].variant}: not buildable on this host: {elsewhere[0].elsewhere}"
                                 + (f" (and {len(elsewhere) - 1} more)" if len(elsewhere) > 1 else ""))
    for e in elsewhere:
        print(f"skip {e.variant}: {e.elsewhere}", flush=True)
    if engine and not a.keep_going:
        # fail before building anything when an image cannot even be started: one line, not a table of
        # identical failures (with --keep-going the variants that can be built still are)
        from .matrix import images

        needed = {e.env.image.name: e.env.image for e in entries if e.env}.values()
        for base in dict.fromkeys(i.base for i in needed if not engine.image_exists(images.tag(i))):
            engine.ensure_base(base)
    print(f"kernel-builder {__version__}: {project.general.name}: {len(entries)} variant(s) of the matrix, "
          f"{a.jobs} at a time{f', engine {engine.path}' if engine else ''} -> {out}", flush=True)
    jobs = containers.build_all(project, entries, out, a.jobs, a.keep_going, engine, options,
                                Path(a.log_dir) if a.log_dir else None)
    print(containers.summary(jobs, time.monotonic() - t0))
    failed = [j for j in jobs if j.state == "failed"]
    if elsewhere:
        print(f"{len(elsewhere)} variant(s) not built: not buildable on this host (skip lines above)")
    if failed:  # the first failure's class: 3 environment (engine, image), 4 compile, 5 check
        return failed[0].exit_code or CompileError.exit_code
    if any(j.state == "cancelled" for j in jobs):
        return CompileError.exit_code
    return EnvironmentProblem.exit_code if elsewhere else 0


def cmd_list_variants(a) -> int:
    if a.all:
        return cmd_list_variants_all(a)
    from .build.plan import select

    project, host = _project_and_host(a.directory)
    print(f"host: torch {host.torch_version} (cxx11 ABI {host.cxx11_abi}, CUDA {host.torch_cuda or 'none'}), "
          f"nvcc {host.nvcc_version or 'none'}, {host.arch}-{host.os}")
    for s in select(project, host, BuildOptions()):
        if s.variant:
            print(f"build  {s.variant}  ({s.family}: {', '.join(k.name for k in s.kernels)})")
            for n in s.notes:
                print(f"       note: {n}")
        else:
            print(f"skip   {s.family}: {s.reason}")
    return 0


def cmd_list_variants_all(a) -> int:
    from .matrix import images, table as matrix
    from .project.config import load_project

    project = load_project(Path(a.directory))
    m = _matrix(a)
    entries = matrix.expand(project, m, BuildOptions())
    if a.variant:
        chosen = {id(e) for e in matrix.pick(entries, a.variant)}
        entries = [e for e in entries if id(e) in chosen]
    images.mark_elsewhere(entries, _engine_if_any(a))
    rows = [("", "variant", "environment", "image", "from", "why")]
    for e in entries:
        image, base = (images.tag(e.env.image), e.env.image.base) if e.env else ("-", "-")
        why = e.elsewhere or e.reason or ("; ".join(e.notes) if e.notes else "")
        state = "elsewhere" if e.elsewhere else "build" if e.variant else "skip"
        rows.append((state, e.variant.name if e.variant else "-", e.environment, image, base, why))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print(("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + ("  " + r[5] if r[5] else "")).rstrip())
    away = sum(1 for e in entries if e.elsewhere)
    print(f"{sum(1 for e in entries if e.variant)} variant(s) to build"
          + (f", {away} of them not on this host (elsewhere: what is missing)" if away else "") + f"; matrix {m.file}")
    return 0


def _engine_if_any(a):
    """The container engine when one answers (its images and local bases count), else None."""
    from .matrix.engine import Engine

    try:
        engine = Engine(getattr(a, "engine", None))
        engine.ping()
        return engine
    except EnvironmentProblem:
        return None


def cmd_images(a) -> int:
    from .matrix import images
    from .matrix.engine import Engine

    engine = Engine(a.engine)
    engine.ping()
    m = _matrix(a)
    if a.images_verb == "list":
        rows = images.listing(engine, m)
        print(f"{'image':<18} {'tag':<45} {'size':>9}  {'state':<8} created")
        for r in rows:
            print(f"{r['image']:<18} {r['ref']:<45} {r['size']:>9}  {r['state']:<8} {r['created']}")
        have = {r["ref"] for r in rows}
        missing = [f"{n} ({images.tag(i)})" for n, i in m.images.items() if images.tag(i) not in have]
        if missing:
            print(f"not built: {', '.join(missing)}")
        return 0
    if a.images_verb == "prune":
        rows = images.listing(engine, m)
        doomed = [r for r in rows if (a.all or r["state"] == "stale") and (not a.image or r["image"] in a.image)]
        for r in doomed:
            engine.remove(r["ref"])
            print(f"removed {r['ref']} ({r['size']})")
        print(f"{len(doomed)} image(s) removed, {len(rows) - len(doomed)} kept")
        return 0
    names = a.image or list(m.images)
    unknown = [n for n in names if n not in m.images]
    if unknown:
        raise UsageError(f"--image {', '.join(unknown)}: not in {m.file} (images: {', '.join(m.images)})")
    for n in names:
        t0 = time.monotonic()
        log = images.log_dir() / f"{n}.log"
        log.unlink(missing_ok=True)
        ref, built = images.ensure(engine, m.images[n], log, rebuild=a.rebuild)
        print(f"{n}: {ref} {'built' if built else 'exists'} ({time.monotonic() - t0:.1f} s; log {log})", flush=True)
    return 0


def cmd_ci(a) -> int:
    from .matrix.ci import github_workflow
    from .project.config import load_project

    project = load_project(Path(a.directory))
    text = github_workflow(project, _matrix(a), a.directory, a.install)
    if a.output:
        Path(a.output).write_text(text)
        print(f"wrote {a.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_check(a) -> int:
    from .build.check import check_tree

    return check_tree(Path(a.build_dir), import_check=not a.no_import, abi_check=not a.no_abi,
                      allow_twin=a.allow_twin)


def cmd_init(a) -> int:
    from .project.scaffold import init_project

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


def scaffold_backends() -> list[str]:
    from . import backends

    return [f for f in backends.families() if backends.get(f).scaffold]


def _matrix_args(sp, engine=True):
    sp.add_argument("--matrix", help="build matrix file (default: the one shipped in kernel_builder/matrix/matrix.toml)")
    sp.add_argument("--base-image", help="FROM image of every toolchain image (default: the matrix's "
                    "default-base, quay.io/pypa/manylinux_2_28_x86_64)")
    if engine:
        sp.add_argument("--engine", help="docker or podman, or a path to one (default: found on PATH)")


def _add_build(sub) -> None:
    """`build`: this host's variants, or with --all the matrix's, each in a container."""
    b = sub.add_parser("build", help="build the variants this host can build (--all: the whole matrix, in containers)")
    b.add_argument("directory", nargs="?", default=".", help="kernel project (with build.toml)")
    b.add_argument("--out", help="output directory (default DIR/build)")
    b.add_argument("--all", action="store_true", help="build every variant of the matrix, each in a container")
    b.add_argument("--variant", action="append", metavar="PATTERN", help="only variants matching this shell "
                   "pattern, braces allowed: 'torch21{1,4}-*-cu130-*' (repeatable)")
    b.add_argument("-j", "--jobs", type=int, default=1, help="with --all: build N variants at once")
    b.add_argument("--keep-going", action="store_true", help="with --all: build the other variants after a failure")
    b.add_argument("--dry-run", action="store_true", help="with --all: print the engine commands, run nothing")
    b.add_argument("--log-dir", help="with --all: write the per-variant logs here (default: kernel-builder's cache)")
    b.add_argument("--cuda-archs", help="only these CUDA capabilities, e.g. '9.0' or '8.0,9.0' (development builds)")
    b.add_argument("--stable-abi", help=argparse.SUPPRESS)  # set by `--all` for a torch-stable-abi variant
    for family in backends.TWINS:
        b.add_argument(f"--{family}-twin", action="store_true", help=f"build only the {family} kernels, compiled "
                       "for this CPU and run in kernel-builder's twin of the hardware (a test build: not publishable)")
    b.add_argument("--soc", action="append", metavar="SOC", help="with a twin build: the chip the twin stands for, "
                   "e.g. Ascend910B1 or Ascend310P3 for --cann-twin (repeatable, one arch group)")
    b.add_argument("-v", "--verbose", action="store_true", help="print compiler commands and output")
    _matrix_args(b)
    b.set_defaults(func=cmd_build)


def _add_list_variants(sub) -> None:
    """`list-variants`: what `build` would build, and why the rest is skipped."""
    lv = sub.add_parser("list-variants", help="show what `build` would build here (--all: in the matrix), and why "
                        "others are skipped")
    lv.add_argument("directory", nargs="?", default=".")
    lv.add_argument("--all", action="store_true", help="the whole matrix: variant, environment, image, why filtered")
    lv.add_argument("--variant", action="append", metavar="PATTERN", help="with --all: only matching variants")
    _matrix_args(lv, engine=False)
    lv.set_defaults(func=cmd_list_variants)


def _add_images(sub) -> None:
    """`images build|list|prune`: the toolchain images of the matrix."""
    im = sub.add_parser("images", help="the toolchain images of the matrix: build, list, prune")
    isub = im.add_subparsers(dest="images_verb", required=True)
    ib = isub.add_parser("build", help="build (or find) the images, all or --image NAME")
    ib.add_argument("--image", action="append", metavar="NAME", help="an [image.*] of the matrix (repeatable)")
    ib.add_argument("--rebuild", action="store_true", help="build even when the tag exists")
    il = isub.add_parser("list", help="kernel-builder images held by the engine: current or stale")
    ip = isub.add_parser("prune", help="remove stale kernel-builder images (--all: every one)")
    ip.add_argument("--all", action="store_true")
    ip.add_argument("--image", action="append", metavar="NAME", help="only images of this name (repeatable)")
    for sp in (ib, il, ip):
        _matrix_args(sp)
        sp.set_defaults(func=cmd_images)


def _add_ci(sub) -> None:
    """`ci github`: a workflow with one job per variant."""
    ci = sub.add_parser("ci", help="generate CI configuration for the build matrix")
    cisub = ci.add_subparsers(dest="ci_verb", required=True)
    gh = cisub.add_parser("github", help="a GitHub Actions workflow: one job per variant, then check (+ upload)")
    gh.add_argument("directory", nargs="?", default=".")
    gh.add_argument("-o", "--output", help="write the workflow here instead of stdout")
    gh.add_argument("--install", help="the shell command that installs kernel-builder on a runner "
                    "(default: pip install 'kernel-builder==VERSION')")
    _matrix_args(gh, engine=False)
    gh.set_defaults(func=cmd_ci)


def _add_check(sub) -> None:
    """`check`: a built tree against the loader's rules."""
    c = sub.add_parser("check", help="verify a built tree (layout, metadata, digest, import, abi3, manylinux_2_28)")
    c.add_argument("build_dir")
    c.add_argument("--no-import", action="store_true", help="skip the import check")
    c.add_argument("--no-abi", action="store_true", help="skip the abi3/manylinux check")
    c.add_argument("--allow-twin", action="store_true", help="check a twin build (--cann-twin) like any other "
                   "instead of failing it as not publishable")
    c.set_defaults(func=cmd_check)


def _add_hub_verbs(sub) -> None:
    """`upload`, `serve`, `mirror`: imported only when run (huggingface_hub, werkzeug)."""
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
    u.set_defaults(func=_lazy("hub.upload"))

    s = sub.add_parser("serve", help="run a private kernel hub for sites that cannot reach huggingface.co")
    s.add_argument("root", type=Path, help="directory holding <org>/<name>.git repositories (created if absent)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token-file", type=Path, help="tokens, one per line: 'TOKEN USER [ORG,ORG|*]' (writes to "
                   "USER/ and those orgs); none: an open hub")
    s.add_argument("--trusted-org", action="append", default=[], help="org reported as trustedKernelPublisher")
    s.add_argument("--read-token", action="store_true", help="require a token for reads too")
    s.add_argument("--max-body-size", type=int, help="largest request body in bytes, else 413 (default 2 GiB)")
    s.add_argument("--header-timeout", type=float, help="seconds a client has to send a request header, else "
                   "408 and close (default 10)")
    s.add_argument("--connection-limit", type=int, help="open connections at most (default 500, kept under "
                   "the descriptor limit); beyond it the longest-idle one is closed, or 503")
    s.add_argument("--threads", type=int, help="requests handled at once (default 8)")
    s.set_defaults(func=_lazy("hub.serve"))

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
    m.set_defaults(func=_lazy("hub.mirror"))


def _add_init(sub) -> None:
    """`init`: a new project from templates/init."""
    i = sub.add_parser("init", help="scaffold a new kernel project")
    i.add_argument("name")
    i.add_argument("--dir", help="where to create it (default ./NAME)")
    i.add_argument("--backends", nargs="+", default=["cpu"], choices=scaffold_backends())
    i.set_defaults(func=cmd_init)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernel-builder", description="Build PyTorch kernel projects into "
                                "Hugging Face kernel-hub variants.")
    p.add_argument("--version", action="version", version=f"kernel-builder {__version__}")
    p.add_argument("--debug", action="store_true", help="on any error, print its traceback too (for bug reports)")
    sub = p.add_subparsers(dest="verb", required=True)
    for add in (_add_build, _add_list_variants, _add_images, _add_ci, _add_check, _add_hub_verbs, _add_init):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Every error ends as one line on stderr and its exit code (errors.py); a traceback is
    printed only with --debug, for typed errors and bugs alike."""
    a = parser().parse_args(argv)
    try:
        return a.func(a)
    except KernelBuilderError as e:
        return _fail(a, f"error: {e}", e.exit_code)
    except KeyboardInterrupt:
        return _fail(a, "interrupted", INTERRUPTED)
    except Exception as e:  # a bug of ours: still one line, and the way to get the rest
        first = (str(e).strip().splitlines() or [""])[0]
        hint = "" if a.debug else " (run `kernel-builder --debug ...` for the traceback, and report it)"
        return _fail(a, f"internal error: {type(e).__name__}: {first}{hint}", UNEXPECTED)


def _fail(a, line: str, code: int) -> int:
    if a.debug:
        traceback.print_exc()
    print(f"kernel-builder: {line}", file=sys.stderr)
    return code
