"""What build.toml may be before any of it is believed: its size, encoding, nesting and value sizes.

A build.toml may come from anywhere (a hub repository, a tarball, a fuzzer). Every one of these checks
runs before or right after tomllib, in time linear in the file, so that a hostile file ends as one
short ConfigError line (exit 2) instead of a traceback, a recursion error, an OSError on a huge path,
or an error line as long as the value that caused it. The figures are far above anything a real
kernel project needs (kernels-community's largest build.toml has a few dozen tables).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

MAX_FILE_BYTES = 8 * 1024 * 1024  # 10,000 kernel tables are ~1 MB
MAX_DEPTH = 16  # tables and arrays nested in each other; the format itself needs 4
MAX_ITEMS = 100_000  # entries of one array or keys of one table
MAX_STRING = 4096  # characters of one value or key (PATH_MAX)
MAX_PATH = 1024  # characters of one path in build.toml
MAX_PATH_PART = 255  # bytes of one path component (NAME_MAX)
MAX_NAME = 100  # general.name and kernel table names: they become module, file and target names
MAX_SHOWN = 160  # characters of an offending value or key quoted in an error line
MAX_MESSAGE = 420  # characters of key, problem and value together (the file's path and line come first)

# Characters that would split an error line or a generated file: C0/C1 controls but tab, and the
# Unicode line and paragraph separators (str.splitlines breaks on all of them).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def shown(value) -> str:
    """An offending value as an error line quotes it: its repr, cut to MAX_SHOWN characters (the size of
    what was cut is said, not shown)."""
    text = repr(value[:MAX_SHOWN + 1] if isinstance(value, str) else value)
    if len(text) <= MAX_SHOWN:
        return text
    unit = "characters" if isinstance(value, str) else "entries" if isinstance(value, (list, dict)) else ""
    return f"{text[:MAX_SHOWN - 1]}…" + (f" ({len(value)} {unit})" if unit else "")


def shown_key(key: str) -> str:
    """A dotted key as an error line names it: control characters escaped, cut to MAX_SHOWN characters."""
    key = _CONTROL.sub(lambda m: repr(m.group())[1:-1], key[:MAX_SHOWN + 1])
    return key if len(key) <= MAX_SHOWN else key[:MAX_SHOWN - 1] + "…"


def fitted(key: str, problem: str, value=None) -> tuple[str, str]:
    """(key, problem with the value it got) of an error line, together at most MAX_MESSAGE characters:
    the key and value are cut first, then the problem (a long list of what is known) if still needed."""
    key = shown_key(key)
    got = "" if value is None else f" (got {shown(value)})"
    room = max(MAX_MESSAGE - len(key) - len(got), 60)
    if len(problem) > room:
        problem = problem[:room - 1] + "…"
    return key, problem + got


def read_text(path: Path) -> str:
    """build.toml's text: at most MAX_FILE_BYTES, strict UTF-8 (an invalid byte, even in a comment, names
    its line: a replacement character would silently change a value or a path)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(path, "", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a kernel project's "
                          "build.toml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(path, "", f"not valid UTF-8: byte 0x{data[e.start]:02x} at column {column}", line) from None


_SPECIAL = re.compile(r"[#\"'\[\]{}]")
# The rest of a one-line "..." string and of a """...""" string, escapes skipped (loops unrolled: a
# megabyte string is one run of the character class, not a million alternations).
_BASIC_REST = re.compile(r'[^"\\\n]*(?:\\.[^"\\\n]*)*"?')
_ML_BASIC_END = re.compile(r'[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""+', re.S)


def deep_line(text: str) -> int | None:
    """The line where brackets and braces nest deeper than MAX_DEPTH, outside strings and comments.
    Checked before tomllib, whose recursive descent would otherwise end in a RecursionError."""
    depth, i = 0, 0
    while True:
        m = _SPECIAL.search(text, i)
        if m is None:
            return None
        i, c = m.start(), m.group()
        if c == "#":
            j = text.find("\n", i)
            if j < 0:
                return None
            i = j + 1
        elif c in "\"'":
            i = _string_end(text, i)
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, i) + 1
            i += 1
        else:
            depth, i = max(depth - 1, 0), i + 1


def _string_end(text: str, i: int) -> int:
    """Index after the string that starts at text[i]; an unterminated one ends with its line or the file
    (tomllib reports it)."""
    if text.startswith('"""', i):
        m = _ML_BASIC_END.match(text, i + 3)
        return m.end() if m else len(text)
    if text.startswith("'''", i):
        j = text.find("'''", i + 3)
        if j < 0:
            return len(text)
        j += 3
        while j < len(text) and text[j] == "'":
            j += 1
        return j
    if text[i] == '"':
        return _BASIC_REST.match(text, i + 1).end()
    ends = [j for j in (text.find("'", i + 1), text.find("\n", i + 1)) if j >= 0]
    return min(ends) + 1 if ends else len(text)


def value_problem(data: dict) -> tuple[str, str, object] | None:
    """(dotted key, problem, value) for the first value past a size, count or depth limit, or holding a
    control character; None when every value is within them. Iterative: no depth can overflow it."""
    stack = [("", data, 0)]
    while stack:
        key, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return key, f"nested deeper than {MAX_DEPTH} levels", None
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                return key, f"longer than {MAX_STRING} characters", value
            if _CONTROL.search(value):
                return key, "holds a control character (a newline, NUL, ...)", value
        elif isinstance(value, int) and not -2**63 <= value < 2**63:  # TOML's integers are 64-bit
            return key, "an integer outside 64 bits", None
        elif isinstance(value, dict):
            if len(value) > MAX_ITEMS:
                return key, f"has more than {MAX_ITEMS} keys", None
            for k, v in value.items():
                dotted = f"{key}.{k}" if key else k
                if len(k) > MAX_STRING or _CONTROL.search(k):
                    return dotted, f"key longer than {MAX_STRING} characters or holding a control character", None
                stack.append((dotted, v, depth + 1))
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                return key, f"has more than {MAX_ITEMS} entries", None
            stack.extend((key, v, depth + 1) for v in reversed(value))
    return None


def path_problem(rel: str) -> str | None:
    """Why a path string cannot name a file here before the file system is asked (which would answer with
    an OSError: a name too long, a NUL byte)."""
    if not rel:
        return "is empty"
    if len(rel) > MAX_PATH:
        return f"is longer than {MAX_PATH} characters"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_PATH_PART for part in rel.split("/")):
        return f"has a path component longer than {MAX_PATH_PART} bytes"
    if "\\" in rel:
        return "uses a backslash: paths in build.toml are POSIX paths"
    return None


# --------------------------------------------------------------------------------------------------
# Where a key is written: an index built once, so an error (or planning's per-kernel lookups) costs O(1)
# --------------------------------------------------------------------------------------------------


class LineIndex:
    """Best-effort line of `a.b.c`: its own table header `[a.b.c]`, else the `c = ` (or dotted `b.c = `)
    line inside the enclosing table, else the enclosing table's header. One pass over the text."""

    def __init__(self, text: str):
        self.headers: dict[tuple[str, ...], int] = {}
        self.keys: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        table: tuple[str, ...] = ()
        for i, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if s.startswith("["):
                name = _header_name(s)
                table = tuple(name) if name else ("\0",)  # an unreadable header: no key is inside it
                self.headers.setdefault(table, i)
                continue
            key = _assigned_key(s)
            if key:
                self.keys.setdefault((table, tuple(key)), i)

    def line_of(self, dotted: str) -> int | None:
        parts = tuple(dotted.split(".")) if dotted else ()
        if not parts:
            return None
        if parts in self.headers:
            return self.headers[parts]
        for split in range(len(parts) - 1, -1, -1):
            table, rest = parts[:split], parts[split:]
            found = [self.keys[(table, rest[:j])] for j in range(1, len(rest) + 1) if (table, rest[:j]) in self.keys]
            if found:
                return min(found)
            if table in self.headers:
                return self.headers[table]
        return None


_HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?")
_KEY_PART = r'[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\''
_ASSIGN = re.compile(rf"^((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*=")


def _header_name(line: str) -> list[str] | None:
    m = _HEADER.match(line)
    if not m:
        return None
    return [p.strip().strip('"\'') for p in m.group(1).split(".")]


def _assigned_key(line: str) -> list[str] | None:
    """`a."b c".d = 1` -> ["a", "b c", "d"]; None for lines that assign nothing."""
    m = _ASSIGN.match(line)
    if not m:
        return None
    return [p.strip().strip('"\'') for p in re.findall(_KEY_PART, m.group(1))]
