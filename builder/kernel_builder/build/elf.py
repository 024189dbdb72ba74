"""Questions about a built shared library, answered with binutils' `nm`."""

from __future__ import annotations

import subprocess
from pathlib import Path


def private_libstdcxx(so: Path) -> bool | None:
    """True when the library carries its own copy of libstdc++'s exception runtime (a static libstdc++).
    torch's libraries throw c10::Error through the shared libstdc++; a private copy makes such an
    exception crash the process (seen with the H100 image's /opt/gcc). None when `nm` is missing."""
    try:
        r = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode == 0 and any(line.split()[-1].split("@")[0] == "__cxa_throw"
                                     for line in r.stdout.splitlines() if line.strip())
