"""Questions about a built shared library: whether it is a whole ELF file (read here), what it defines (`nm`)."""

from __future__ import annotations

import struct
from pathlib import Path

from ..tools import probe


def private_libstdcxx(so: Path) -> bool | None:
    """True when the library carries its own copy of libstdc++'s exception runtime (a static libstdc++).
    torch's libraries throw c10::Error through the shared libstdc++; a private copy makes such an
    exception crash the process (seen with the H100 image's /opt/gcc). None when `nm` is missing."""
    r = probe(["nm", "-D", "--defined-only", str(so)])
    if r is None:
        return None
    return r.returncode == 0 and any(line.split()[-1].split("@")[0] == "__cxa_throw"
                                     for line in r.stdout.splitlines() if line.strip())


def elf_problem(path: Path) -> str | None:
    """Why `path` is not a whole ELF file (None: its header, header tables and segments lie within it).
    A truncated or foreign file must be a finding of `check`, not an exception from the ELF readers
    (kernel-abi-check, nm) that come after."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
            ident_ok = head[:4] == b"\x7fELF" and len(head) >= 16 and head[4] in (1, 2) and head[5] in (1, 2)
            if not ident_ok:
                return "not an ELF file" if head[:4] != b"\x7fELF" else "ELF identification is damaged"
            is64, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if len(head) < (64 if is64 else 52):
                return f"truncated ELF header ({size} bytes)"
            tables = _header_tables(head, is64, order)
            for offset, entsize, count in tables:
                if offset + entsize * count > size:
                    return f"truncated: its header tables end at byte {offset + entsize * count}, the file has {size}"
            return _segment_problem(f, tables[0], is64, order, size)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"


def _header_tables(head: bytes, is64: bool, order: str) -> list[tuple[int, int, int]]:
    """[(offset, entry size, count)] of the program header table, then the section header table."""
    if is64:
        phoff, shoff = struct.unpack_from(order + "QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 54)
    else:
        phoff, shoff = struct.unpack_from(order + "II", head, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 42)
    return [(phoff, phentsize, phnum), (shoff, shentsize, shnum)]


def _segment_problem(f, table: tuple[int, int, int], is64: bool, order: str, size: int) -> str | None:
    """The first program segment whose bytes the file does not hold (a cut-off library loads garbage)."""
    offset, entsize, count = table
    layout, need = ("IIQQQQ", 40) if is64 else ("IIIII", 20)  # p_type, then (p_flags,) p_offset ... p_filesz
    if entsize < need:
        return None if count == 0 else f"program header entries of {entsize} bytes are too small"
    for i in range(count):
        f.seek(offset + i * entsize)
        fields = struct.unpack(order + layout, f.read(need))
        p_offset, p_filesz = (fields[2], fields[5]) if is64 else (fields[1], fields[4])
        if p_offset + p_filesz > size:
            return f"truncated: segment {i} ends at byte {p_offset + p_filesz}, the file has {size}"
    return None
