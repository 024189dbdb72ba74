"""Running the external tools a build drives (the compile child, CMake): output into a log, optionally
echoed, and a missing tool reported as our typed error instead of an OSError traceback."""

from __future__ import annotations

import subprocess
import sys

from .errors import EnvironmentProblem


def run_logged(cmd: list[str], log, env: dict, verbose: bool) -> int:
    """Run a build step with its output in the log (and on the terminal with -v); the exit status."""
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                errors="replace")
    except OSError as e:
        raise EnvironmentProblem(f"cannot run {cmd[0]}: {e.strerror or e}") from None
    for line in proc.stdout:
        log.write(line)
        if verbose:
            sys.stdout.write(line)
    return proc.wait()
