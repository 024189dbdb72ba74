"""Typed fatal errors. The CLI maps each class to one exit code and prints one line, never a traceback.

Exit codes: 2 = the user's input is wrong (build.toml, arguments); 3 = the environment cannot build
(no compiler, no torch); 4 = a compile failed; 5 = a built tree failed `check`.
"""

from __future__ import annotations


class KernelBuilderError(Exception):
    exit_code = 1


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


class CompileError(KernelBuilderError):
    exit_code = 4


class CheckFailed(KernelBuilderError):
    exit_code = 5
