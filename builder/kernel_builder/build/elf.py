"""Questions about a built shared library, answered with binutils' `nm`."""

from __future__ import annotations

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
