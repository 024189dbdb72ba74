"""Compiler flags build.toml may not pass: those that name an output file or read options from a file.

kernel-builder decides where every output goes (the cache, then the variant directory, atomically): a
flag such as `-o /elsewhere` would write outside both, and `@file` or `-optf file` would read flags,
these ones included, from a file the check never saw. The same flags are refused inside the wrappers
that hand flags on to another tool (`-Wl,`, `-Xlinker`, `-Xcompiler`, ...) and inside one entry that a
CMake file or shell would split at blanks (`"-O2 -o /x"`), for every backend's flag list.
"""

from __future__ import annotations

import re

# Prefixes of an argument that names an output (or a directory for outputs), checked case-sensitively.
# `-o` covers `-o<path>` and nvcc's `-odir`; _ALLOWED holds the two nvcc `-o...` flags that name no file.
_OUTPUT_PREFIXES = ("-o", "-MF", "-MJ", "--output", "-output", "--keep-dir", "-keep-dir", "-save-temps",
                    "--save-temps", "-dumpdir", "--dependency-output", "-Map", "--Map", "-optf", "--options-file")
_ALLOWED = ("-optix-ir", "-opt-info")  # nvcc: an output *kind*, and optimization remarks
# Wrappers whose value is a comma-separated list of arguments for another tool (gcc and nvcc spellings).
_COMMA_WRAPPERS = ("-Wl,", "-Wp,", "-Wa,", "-Xcompiler=", "-Xlinker=", "-Xptxas=", "-Xnvlink=", "-Xarchive=",
                   "--compiler-options=", "--linker-options=", "--ptxas-options=", "--nvlink-options=")
# Wrappers that take the next argument as the other tool's argument(s).
_NEXT_WRAPPERS = ("-Xlinker", "-Xcompiler", "-Xassembler", "-Xpreprocessor", "-Xptxas", "-Xnvlink", "-Xarchive",
                  "-Xclang", "--compiler-options", "--linker-options", "--ptxas-options", "--nvlink-options")


_SPLIT = re.compile(r"[\s;]+")


def _bad(arg: str) -> bool:
    arg = arg.strip()
    if arg.startswith("@"):
        return True
    if arg.startswith(_ALLOWED):
        return False
    return arg.startswith(_OUTPUT_PREFIXES)


def _wrapped(arg: str) -> list[str]:
    """The arguments a wrapper flag hands on (`-Wl,-o,x` -> ["-o", "x"]), [] for a plain flag."""
    for w in _COMMA_WRAPPERS:
        if arg.startswith(w):
            return arg[len(w):].split(",")
    return []


def flag_problem(flags, i: int) -> str | None:
    """Why flags[i] may not be passed (None: it may): itself, what a wrapper before it hands on, or what it
    hands on, names an output or reads a file of options."""
    arg = flags[i]
    handed = [arg] + _wrapped(arg)
    if i > 0 and flags[i - 1] in _NEXT_WRAPPERS:
        handed += [arg] + arg.split(",")
    # A CMake file (the cann flows) or a shell splits one entry at blanks and semicolons: each piece counts.
    handed += [piece for a in handed for piece in _SPLIT.split(a) if piece]
    if any(_bad(a) for a in handed):
        return ("names an output file or reads options from a file (kernel-builder decides where outputs go, "
                "and every flag must be in build.toml)")
    return None
