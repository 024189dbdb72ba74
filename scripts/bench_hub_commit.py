#!/usr/bin/env python3
"""How fast, and in how much memory, `kernel-builder serve` takes one large commit over loopback.

Starts the real CLI server in its own process, writes an NDJSON commit body holding FILES random files of SIZE_MB
in all (base64, as huggingface_hub sends them) to a temporary file, POSTs it from that file (the client holds
no copy in memory), and prints the seconds from the first byte sent to the answer, MB/s of file content, the
server's peak resident memory before and after (VmHWM), and `git fsck` of the result. With --hf it also times
huggingface_hub's own create_commit of the same files (its client builds the body in memory).

    python scripts/bench_hub_commit.py [--size-mb 200] [--files 1] [--hf]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_body(path: Path, files: int, size: int) -> int:
    """The NDJSON body, written piecewise (base64 of 3 MiB-multiple chunks concatenates cleanly)."""
    per = size // files
    with open(path, "wb") as out:
        out.write(json.dumps({"key": "header", "value": {"summary": "bench", "description": ""}}).encode() + b"\n")
        for i in range(files):
            out.write(b'{"key": "file", "value": {"content": "')
            left = per
            while left:
                n = min(left, 3 << 20)
                out.write(base64.b64encode(os.urandom(n)))
                left -= n
            out.write(f'", "path": "build/bench/f{i:04d}.bin", "encoding": "base64"}}}}\n'.encode())
    return per * files


def post(url: str, body: Path) -> tuple[int, bytes, float]:
    host, port = url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t = time.perf_counter()
    with open(body, "rb") as f:
        conn.request("POST", "/api/kernels/acme/bench/commit/main", body=f,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson",
                              "Content-Length": str(body.stat().st_size)})
        r = conn.getresponse()
        data = r.read()
    return r.status, data, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200)
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--hf", action="store_true", help="also time huggingface_hub's create_commit of the same size")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-bench-commit-") as tmpd:
        tmp = Path(tmpd)
        (tmp / "tokens").write_text(f"{TOKEN} bench acme\n")
        proc = subprocess.Popen([sys.executable, "-m", "kernel_builder", "serve", str(tmp / "root"), "--port", "0",
                                 "--token-file", str(tmp / "tokens")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            url = proc.stdout.readline().split(" at ")[1].split()[0]
            return bench(a, tmp, url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def bench(a, tmp: Path, url: str, pid: int) -> int:
    os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=url, token=TOKEN)
    api.create_repo("acme/bench", repo_type="kernel")
    size = write_body(tmp / "body.ndjson", a.files, int(a.size_mb * 1e6))
    rss0 = peak_rss_mb(pid)
    status, data, secs = post(url, tmp / "body.ndjson")
    rss1 = peak_rss_mb(pid)
    fsck = subprocess.run(["git", "--git-dir", str(tmp / "root" / "acme" / "bench.git"), "fsck"],
                          capture_output=True, text=True)
    print(f"raw POST: {a.files} file(s), {size / 1e6:.0f} MB ({(tmp / 'body.ndjson').stat().st_size / 1e6:.0f} MB "
          f"body): HTTP {status} in {secs:.2f} s = {size / 1e6 / secs:.0f} MB/s of file content; server peak RSS "
          f"{rss0:.0f} MB before, {rss1:.0f} MB after; git fsck {'ok' if fsck.returncode == 0 else fsck.stderr}")
    if status != 200:
        print(data[:500].decode(errors="replace"))
        return 1
    t = time.perf_counter()
    got = Path(api.hf_hub_download("acme/bench", "build/bench/f0000.bin", repo_type="kernel",
                                   cache_dir=tmp / "dl")).stat().st_size
    secs = time.perf_counter() - t
    print(f"download of one {got / 1e6:.0f} MB file: {secs:.2f} s = {got / 1e6 / secs:.0f} MB/s; server peak RSS "
          f"{peak_rss_mb(pid):.0f} MB")
    if a.hf:
        src = tmp / "files"
        src.mkdir()
        for i in range(a.files):
            (src / f"g{i:04d}.bin").write_bytes(os.urandom(size // a.files))
        ops = [CommitOperationAdd(f"build/hf/{p.name}", str(p)) for p in sorted(src.iterdir())]
        t = time.perf_counter()
        api.create_commit("acme/bench", ops, commit_message="hf", repo_type="kernel")
        secs = time.perf_counter() - t
        print(f"huggingface_hub create_commit: {size / 1e6:.0f} MB in {secs:.2f} s = {size / 1e6 / secs:.0f} MB/s "
              f"(client hashing and in-memory body included); server peak RSS {peak_rss_mb(pid):.0f} MB")
    return 0 if fsck.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
