"""`kernel-builder build --all`: every variant of the matrix, each built and checked in a container of its
environment's image, N at a time, with a live progress display and a summary table.

Inside a container the host build runs unchanged (`python -m kernel_builder build /src --variant V`):
kernel-builder is mounted read-only (never baked into images), the project read-only at /src (a fixed
path, so ccache hits across checkouts), a staging directory read-write at /out. A variant reaches --out
only after its build and its checks passed, by one rename; a failed one leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import PACKAGE_DIR, __version__, backends, settings
from ..build import cache, layout
from . import images
from .engine import CA_IN_CONTAINER, CACHE, CCACHE, KB, OUT, SRC, Engine, Mount, host_ca_bundle
from ..errors import KernelBuilderError
from .table import IMAGE_PYTHON, Entry, platform
from ..project.options import BuildOptions
from ..build.plan import Selection, hash_inputs, make_plan
from ..project.model import Project
from ..build.staging import build_variant
from ..variants import Variant

# Run inside the container: put ccache's compiler links first (the image made them when it has ccache)
# and send nvcc through ccache too; torch >= 2.13 would add its own wrapper, which we switch off so every
# torch version compiles the same way.
_ENTRY = ('export PATH="/opt/kb-ccache:$PATH" TORCH_NO_COMPILER_WRAPPER=1; '
          'if [ -f /usr/local/Ascend/ascend-toolkit/set_env.sh ]; then . /usr/local/Ascend/ascend-toolkit/set_env.sh; '
          'export TORCH_DEVICE_BACKEND_AUTOLOAD=0; fi; '
          'if [ -n "${CUDA_HOME:-}" ] && command -v ccache >/dev/null; then export PYTORCH_NVCC="ccache $CUDA_HOME/bin/nvcc"; fi; '
          'exec "$@"')


@dataclass
class Job:
    entry: Entry
    log: Path
    state: str = "queued"
    started: float | None = None
    ended: float | None = None
    size: int = 0
    error: str | None = None
    exit_code: int = 0

    @property
    def variant(self) -> Variant:
        return self.entry.variant

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.monotonic()) - self.started


class Progress:
    """One line per variant. On a terminal the block is redrawn in place; elsewhere (CI logs) each state
    change is printed once."""

    def __init__(self, jobs: list[Job], stream=None):
        self.jobs, self.stream = jobs, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.lock = threading.Lock()
        self.drawn = 0
        self.width = max(len(j.variant.name) for j in jobs) if jobs else 10
        self.env_width = max(len(j.entry.environment) for j in jobs) if jobs else 10
        self._stop = threading.Event()
        if self.tty:
            threading.Thread(target=self._tick, daemon=True).start()

    def _line(self, j: Job) -> str:
        extra = f"  {j.error}" if j.error and j.state == "failed" else ""
        return (f"  {j.variant.name:<{self.width}}  {j.entry.environment:<{self.env_width}}  {j.state:<15} "
                f"{j.elapsed:6.1f} s{extra}")

    def set(self, job: Job, state: str) -> None:
        with self.lock:
            job.state = state
            if state in ("preparing image", "building") and job.started is None:
                job.started = time.monotonic()
            if state in ("done", "up to date", "failed", "cancelled"):
                job.ended = time.monotonic()
                job.started = job.started or job.ended
            if self.tty:
                self._redraw()
            else:
                print(self._line(job).rstrip(), file=self.stream, flush=True)

    def _redraw(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")
        for j in self.jobs:
            self.stream.write("\x1b[2K" + self._line(j)[: shutil.get_terminal_size().columns - 1] + "\n")
        self.drawn = len(self.jobs)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self.lock:
                self._redraw()

    def close(self) -> None:
        self._stop.set()


# --- what is mounted -----------------------------------------------------------------------------------


def runtime_bundle() -> Path:
    """kernel-builder's own package (with its templates), copied once per content hash into the cache and
    mounted read-only into every build container."""
    from ..build.render import template_dir

    own = PACKAGE_DIR
    files = {f"kernel_builder/{p.relative_to(own).as_posix()}": p for p in own.rglob("*")
             if p.is_file() and (p.suffix in (".py", ".toml")) and "__pycache__" not in p.parts}
    tdir = template_dir()
    files.update({f"kernel_builder/templates/{p.relative_to(tdir).as_posix()}": p for p in tdir.rglob("*")
                  if p.is_file() and p.name != "Dockerfile"})
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].read_bytes() + b"\0")
    dest = cache.root() / "runtime" / h.hexdigest()[:16]
    if not (dest / ".complete").is_file():
        tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, src in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        (tmp / ".complete").write_text(h.hexdigest())
        try:
            os.replace(tmp, dest)
        except OSError:  # another build got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def project_cache(project: Project) -> Path:
    d = cache.root() / "containers" / f"{project.general.name}-{cache.project_key(project.root)}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_dir(project: Project) -> Path:
    d = project_cache(project) / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _stamp_key(project: Project, entry: Entry, image_tag: str, bundle: Path, prov: dict,
               options: BuildOptions) -> str:
    return hash_inputs(project, [__version__, bundle.name, entry.variant.name, image_tag, entry.stable_abi or "",
                                 json.dumps(options.fingerprint(), sort_keys=True), json.dumps(prov, sort_keys=True)])


def _up_to_date(stamp: Path, key: str, target: Path) -> bool:
    try:
        saved = json.loads(stamp.read_text())
        meta = (target / "metadata.json").read_bytes()
    except (OSError, ValueError):
        return False
    return saved.get("key") == key and saved.get("metadata") == hashlib.sha256(meta).hexdigest()


# --- one variant ------------------------------------------------------------------------------------


class Runner:
    def __init__(self, project: Project, out: Path, engine: Engine | None, options: BuildOptions):
        self.project, self.out, self.engine, self.options = project, out, engine, options
        self.prov = layout.provenance(project)
        self.bundle = runtime_bundle() if engine else None
        self.ccache = cache.root() / "ccache"
        self.ccache.mkdir(parents=True, exist_ok=True)
        self.stamps = project_cache(project) / "stamps"
        self.stamps.mkdir(parents=True, exist_ok=True)
        self.cancel = threading.Event()

    def _mounts(self, entry: Entry, stage: Path) -> list[Mount]:
        pc = project_cache(self.project) / entry.env.image.name
        pc.mkdir(parents=True, exist_ok=True)
        mounts = [Mount(self.project.root.resolve(), SRC, True), Mount(stage, OUT), Mount(self.bundle, KB, True),
                  Mount(pc, CACHE), Mount(self.ccache, CCACHE)]
        ca = host_ca_bundle()
        if ca:
            mounts.append(Mount(ca.resolve(), CA_IN_CONTAINER, True))
        return mounts

    def _env(self, entry: Entry, image_tag: str) -> dict[str, str]:
        prov = dict(self.prov, environment={"image": image_tag, "torch": entry.env.torch,
                                            "base": entry.env.image.base})
        env = {"HOME": "/tmp", "PYTHONPATH": KB, "PYTHONDONTWRITEBYTECODE": "1", "KERNEL_BUILDER_CACHE": CACHE,
               "CCACHE_DIR": CCACHE, "KERNEL_BUILDER_PROVENANCE": json.dumps(prov), "PYTHONUNBUFFERED": "1"}
        env.update(backends.get(entry.env.backend).container_env(entry.env.host()))
        if host_ca_bundle():
            env.update(PIP_CERT=CA_IN_CONTAINER, REQUESTS_CA_BUNDLE=CA_IN_CONTAINER)
        env.update(settings.current().proxies)
        return env

    def run(self, job: Job, progress: Progress) -> None:
        entry = job.entry
        if self.cancel.is_set():
            progress.set(job, "cancelled")
            return
        job.log.unlink(missing_ok=True)
        try:
            if entry.env is None:
                return self._pure_python(job, progress)
            ref = images.tag(entry.env.image)
            key = _stamp_key(self.project, entry, ref, self.bundle, self.prov, self.options)
            stamp = self.stamps / f"{entry.variant.name}.json"
            if _up_to_date(stamp, key, self.out / entry.variant.name):
                job.size = _size(self.out / entry.variant.name)
                progress.set(job, "up to date")
                return
            progress.set(job, "preparing image")
            ref, _ = images.ensure(self.engine, entry.env.image, job.log, platform=platform(entry.env.arch))
            self._build_in_container(job, progress, ref)
            target = self.out / entry.variant.name
            cache.write_atomic(stamp, json.dumps({"key": key, "metadata": hashlib.sha256(
                (target / "metadata.json").read_bytes()).hexdigest()}))
            job.size = _size(target)
            progress.set(job, "done")
        except KernelBuilderError as e:
            job.error, job.exit_code = str(e), e.exit_code
            progress.set(job, "failed")

    def _build_in_container(self, job: Job, progress: Progress, ref: str) -> None:
        from ..build.check import check_variant
        from ..errors import CheckFailed, CompileError

        entry, v = job.entry, job.entry.variant.name
        self.out.mkdir(parents=True, exist_ok=True)
        stage = self.out / f".kb-stage-{v}-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            mounts, env = self._mounts(entry, stage), self._env(entry, ref)
            build, check = self.inner_commands(entry)
            plat = platform(entry.env.arch)
            progress.set(job, "building")
            if self.engine.run(ref, build, mounts, env, job.log, platform=plat) != 0 or \
                    not (stage / v / "metadata.json").is_file():
                raise CompileError(f"{v}: build failed: {_inner_error(job.log)} (log: {job.log})")
            progress.set(job, "checking")
            if self.engine.run(ref, check, mounts, env, job.log, platform=plat) != 0:
                raise CheckFailed(f"{v}: check in its image failed: {_inner_error(job.log)} (log: {job.log})")
            problems = check_variant(stage / v, import_check=False, abi_check=True)  # manylinux_2_28, abi3: here
            if problems:
                raise CheckFailed(f"{v}: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
            layout.adopt(self.out, v, stage / v)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def inner_commands(self, entry: Entry) -> tuple[list[str], list[str]]:
        """What runs inside the container: the host build of one variant, then its check (import included:
        this is the variant's own torch)."""
        kb = ["sh", "-c", _ENTRY, "kb", IMAGE_PYTHON, "-m", "kernel_builder"]
        build = kb + ["build", SRC, "--out", OUT, "--variant", entry.variant.name, "-v"]  # -v: compiler output in the log
        if entry.stable_abi:
            build += ["--stable-abi", entry.stable_abi]
        if self.options.cuda_archs:
            build += ["--cuda-archs", ",".join(self.options.cuda_archs)]
        return build, kb + ["check", f"{OUT}/{entry.variant.name}", "--no-abi"]

    def command_lines(self, entry: Entry) -> list[str]:
        """The engine commands `build --all` runs for one variant, as shell lines (`--dry-run`)."""
        if entry.env is None:
            return [f"# {entry.variant}: pure Python, laid out on this host (no container)"]
        ref = images.tag(entry.env.image)
        stage = self.out / f".kb-stage-{entry.variant.name}-<pid>"
        mounts, env = self._mounts(entry, stage), self._env(entry, ref)
        plat = platform(entry.env.arch)
        lines = [f"# {entry.variant} in {ref} (FROM {entry.env.image.base}); "
                 f"`kernel-builder images build --image {entry.env.image.name}` makes the image"]
        if entry.elsewhere:
            lines.append(f"# not buildable on this host: {entry.elsewhere}")
        for cmd in self.inner_commands(entry):
            lines.append(shlex.join(self.engine.run_argv(ref, cmd, mounts, env, platform=plat)))
        return lines

    def _pure_python(self, job: Job, progress: Progress) -> None:
        progress.set(job, "building")
        sel = Selection(job.entry.family, job.entry.variant)
        job.size = build_variant(make_plan(self.project, sel, None, BuildOptions()), None, self.out).size
        progress.set(job, "done")


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) if d.is_dir() else 0


def _inner_error(log: Path) -> str:
    """The inner kernel-builder's own one-line error, else the last line of the container's output."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("kernel-builder: error:"):
            return ln[len("kernel-builder: error:"):].strip()
    for ln in reversed(lines):
        if "FAIL" in ln or "error" in ln.lower():
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def here_and_elsewhere(entries: list[Entry], engine: Engine | None) -> tuple[list[Entry], list[Entry]]:
    """(the entries this host can build, those it cannot: each with its one-line `elsewhere`). Without an
    engine (a dry run) only the network decides."""
    images.mark_elsewhere(entries, engine)
    return [e for e in entries if not e.elsewhere], [e for e in entries if e.elsewhere]


def build_all(project: Project, entries: list[Entry], out: Path, jobs: int, keep_going: bool,
              engine: Engine | None, options: BuildOptions, logs: Path | None = None) -> list[Job]:
    if logs is None:
        logs = log_dir(project)
    logs.mkdir(parents=True, exist_ok=True)
    todo = [Job(e, logs / f"{e.variant.name}.log") for e in entries]
    runner = Runner(project, out, engine, options)
    progress = Progress(todo)

    def one(job: Job) -> None:
        runner.run(job, progress)
        if job.state == "failed" and not keep_going:
            runner.cancel.set()

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo))
    finally:
        progress.close()
    return todo


def summary(jobs: list[Job], wall: float) -> str:
    rows = [("variant", "environment", "time", "size", "result", "log")]
    for j in jobs:
        size = f"{j.size / 1024:.0f} KiB" if j.size else "-"
        rows.append((j.variant.name, j.entry.environment, f"{j.elapsed:.1f} s", size, j.state, str(j.log)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(j.elapsed for j in jobs)
    failed = [j for j in jobs if j.state == "failed"]
    lines.append(f"{len(jobs)} variant(s): {sum(j.state == 'done' for j in jobs)} built, "
                 f"{sum(j.state == 'up to date' for j in jobs)} up to date, {len(failed)} failed, "
                 f"{sum(j.state == 'cancelled' for j in jobs)} cancelled; wall {wall:.1f} s, sum of variants {total:.1f} s")
    for j in failed:
        lines.append(f"failed: {j.error}")
    return "\n".join(lines)
