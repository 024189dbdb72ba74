"""The one way kernel-builder runs another program (compilers, CMake, nm, git, pip, docker/podman).

Why one helper: every call site needs the same three answers, and a missed one is a traceback in front of
the user. A program that is missing or cannot start is an EnvironmentProblem naming it; a program that
hangs past its timeout is a ToolTimeout (an EnvironmentProblem, so exit code 3) naming what we were doing;
a log's first compiler error is found the same way for every build step. Optional facts (a compiler's
version, a symbol table, git status) use `probe`, which answers None instead of raising: a host without
git or binutils still builds.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from .errors import EnvironmentProblem, ToolTimeout

DEFAULT_TIMEOUT = 600.0
Completed = subprocess.CompletedProcess  # what `run` returns, for callers' annotations


def run(cmd: list[str], what: str, *, timeout: float | None = DEFAULT_TIMEOUT, env: dict | None = None,
        input: str | bytes | None = None, cwd: str | Path | None = None,
        text: bool = True) -> Completed:
    """Run to completion with output captured; the caller reads the return code. `what` says what we were
    doing, for the one line a failure to start or a timeout becomes."""
    argv = [str(c) for c in cmd]
    try:  # its own process group, so that a timeout or Ctrl-C stops what it started too
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=text,
                                start_new_session=True, **({"errors": "replace"} if text else {}))
    except OSError as e:
        raise EnvironmentProblem(f"{what}: cannot run {cmd[0]}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise ToolTimeout(f"{what}: {Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def probe(cmd: list[str], timeout: float = 60, env: dict | None = None,
          cwd: str | Path | None = None) -> Completed | None:
    """A fact that is nice to have: the completed process, or None when the program is missing or hangs."""
    try:
        return run(cmd, "probe", timeout=timeout, env=env, cwd=cwd)
    except EnvironmentProblem:
        return None


def run_logged(cmd: list[str], log: IO[str], what: str, *, env: dict | None = None, verbose: bool = False,
               timeout: float | None = None) -> int:
    """Run a long step (a compile, an image build, a container) with its output appended to an open log
    (and echoed with -v); the exit status. Interrupted, the child is stopped: no build runs on for no one."""
    log.write("$ " + shlex.join(str(c) for c in cmd) + "\n")
    log.flush()
    try:  # its own process group: stopping it stops what it started too (ninja -> nvcc -> cicc)
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace", start_new_session=True)
    except OSError as e:
        raise EnvironmentProblem(f"{what}: cannot run {cmd[0]}: {e.strerror or e}") from None
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        _kill_group(proc)

    timer = threading.Timer(timeout, stop) if timeout else None  # output may stall: a deadline, not a read
    if timer:
        timer.start()
    try:
        for line in proc.stdout:
            log.write(line)
            if verbose:
                sys.stdout.write(line)
        rc = proc.wait()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        if timer:
            timer.cancel()
    if expired.is_set():
        raise ToolTimeout(f"{what}: {Path(str(cmd[0])).name} did not finish within {timeout:.0f} s")
    return rc


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def first_error(log_path: Path, rc: int) -> str:
    """The first line of a build log that reads like a compiler or CMake error (else its last line)."""
    text = log_path.read_text(errors="replace").splitlines()
    errs = ([ln.strip() for ln in text if "error:" in ln.lower() or "error " in ln.lower()[:12] or "CMake Error" in ln]
            or [ln.strip() for ln in text if ln.startswith("FAILED")])
    return (errs[0] if errs else (text[-1].strip() if text else f"exit status {rc}"))[:300]
