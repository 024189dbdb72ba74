"""scripts/load_test_hub.py in a small configuration: the real CLI server at `ulimit -n 256` under downloads and
commits while idle, slow and oversized clients pile on, malformed requests, and kill -9 rounds; every
acknowledged commit must survive."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_load_and_faults_small():
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "load_test_hub.py"), "-n", "4", "-m", "2", "--idle",
                        "300", "--slow", "3", "--oversized", "2", "--kills", "1", "--timeout", "120"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "downloads ok 4/4" in out and "uploads ok 2/2" in out
    slow = out.split("3 slow headers (")[1].split(")")[0]  # e.g. "2 got 408, 1 closed at the connection limit"
    assert int(slow.split()[0]) >= 1 and int(slow.split()[0]) + int(slow.split(", ")[1].split()[0]) == 3, slow
    assert "300 idle connections" in out and "2 got 413" in out
    tried = out.split("bad inputs tried: ")[1].split()[0]
    assert f"({tried} refused with a 4xx" in out
    acked = out.split("commits acknowledged vs present: ")[1].split()[0]
    assert int(acked) > 0 and f"{acked} present" in out and "git fsck ok" in out
