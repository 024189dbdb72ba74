"""Typed fatal errors. The CLI maps each class to one exit code and prints one line, never a traceback.

Every exit code of the CLI is here:
  0  done
  1  an unexpected error (a bug: run `kernel-builder --debug VERB ...` for the traceback)
  2  the user's input is wrong (build.toml, matrix.toml, arguments)
  3  the environment cannot build (no compiler, no torch, no container engine, a tool timed out)
  4  a compile failed
  5  a built tree failed `check`
  6  a hub refused (authentication, a missing repository, an HTTP error)
  7  a hub could not be reached
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations


UNEXPECTED = 1  # any other exception: a bug (cli.main prints one line; --debug adds the traceback)
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class KernelBuilderError(Exception):
    exit_code = UNEXPECTED


class ConfigError(KernelBuilderError):
    """build.toml (or a path it names) is wrong; raised before anything is compiled or written."""

    exit_code = 2

    def __init__(self, file, key: str, problem: str, line: int | None = None):
        self.file, self.key, self.problem, self.line = str(file), key, problem, line
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class UsageError(KernelBuilderError):
    exit_code = 2


class EnvironmentProblem(KernelBuilderError):
    exit_code = 3


class ToolTimeout(EnvironmentProblem):
    """A program we ran did not finish within its time limit (tools.run); callers that can say more catch it."""


class CompileError(KernelBuilderError):
    exit_code = 4


class CheckFailed(KernelBuilderError):
    exit_code = 5


class HubError(KernelBuilderError):
    """A hub refused or could not be reached; nothing was changed by the failed call."""

    exit_code = 6


class HubAuthError(HubError):
    """401/403: no token, a wrong token, or a token without write access to the namespace."""


class HubRepoNotFound(HubError):
    pass


class HubNetworkError(HubError):
    exit_code = 7


def clip(text: str, n: int = 300) -> str:
    """Text quoted from outside (a server's answer, a tree's id, a request's path) cut to `n` characters, so the
    error line that quotes it stays one short line."""
    return text if len(text) <= n else text[:n - 1] + "…"
