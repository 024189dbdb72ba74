"""`serve` under hostile clients: idle and slow connections, oversized bodies, a full connection table, a full
disk, and large commits streamed to git objects. The server is the real CLI (`kernel-builder serve`) in its own
process where descriptor limits matter, `serve()` in this process elsewhere."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks every huggingface_hub 2.4 call (CONTRACT §7)

from huggingface_hub import HfApi  # noqa: E402

from kernel_builder.hub.serve import Limits, serve  # noqa: E402
from test_serve import HEADER, http, ndjson  # noqa: E402

TOKEN = "tok-limits"


def start_cli_server(tmp_path: Path, *options: str, nofile: int | None = None) -> tuple[subprocess.Popen, str]:
    (tmp_path / "tokens").write_text(f"{TOKEN} alice acme\n")

    def limit():  # in the child only: the server must live with this many descriptors
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([sys.executable, "-m", "kernel_builder", "serve", str(tmp_path / "root"), "--port", "0",
                             "--token-file", str(tmp_path / "tokens"), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    line = proc.stdout.readline()
    assert " at " in line, line + proc.stderr.read() if proc.poll() is not None else line
    return proc, line.split(" at ")[1].split()[0]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def addr(url: str) -> tuple[str, int]:
    host, port = url.rsplit("/", 1)[1].split(":")
    return host, int(port)


def test_300_idle_connections_at_ulimit_256_do_not_stop_a_request(tmp_path):
    mine = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert mine[0] >= 400 or mine[1] >= 400, f"this test opens 300 sockets; RLIMIT_NOFILE is {mine}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(mine[0], 400), mine[1]))
    proc, url = start_cli_server(tmp_path, "--header-timeout", "30", nofile=256)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(addr(url), timeout=5))
        t = time.monotonic()
        status, _, body = http(f"{url}/api/organizations/acme/overview", token=None)
        assert status == 200 and json.loads(body)["name"] == "acme"
        assert time.monotonic() - t < 5
        HfApi(endpoint=url, token=TOKEN).create_repo("acme/k", repo_type="kernel")  # a write too (git, pipes)
        closed = 0
        for s in idle:  # the oldest idle ones were closed to make room: they read EOF
            s.settimeout(0.01)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, OSError):
                pass
        assert closed >= 300 - 256
    finally:
        for s in idle:
            s.close()
        stop(proc)
        resource.setrlimit(resource.RLIMIT_NOFILE, mine)


def test_slow_header_gets_408_and_idle_connection_is_closed(tmp_path):
    srv = serve(tmp_path / "root", limits=Limits(header_timeout=1.0))
    try:
        slow = socket.create_connection(addr(srv.url), timeout=10)
        slow.sendall(b"GET /api/organizations/acme/overview HTTP/1.1\r\nHost: x\r\n")  # never finished
        quiet = socket.create_connection(addr(srv.url), timeout=10)
        t = time.monotonic()
        answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - t < 4
        assert quiet.recv(1) == b"" and time.monotonic() - t < 4  # never sent a byte: closed without a word
        assert http(f"{srv.url}/api/organizations/acme/overview", token=None)[0] == 200
    finally:
        srv.shutdown()


def test_oversized_body_is_413_before_it_is_sent(tmp_path):
    srv = serve(tmp_path / "root", limits=Limits(max_body_size=10_000))
    try:
        with socket.create_connection(addr(srv.url), timeout=10) as s:
            s.sendall(b"POST /api/kernels/acme/k/commit/main HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 12000000\r\n\r\n" + b"x" * 1000)
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
    finally:
        srv.shutdown()


def test_full_connection_table_of_busy_clients_gives_503(tmp_path, caplog):
    srv = serve(tmp_path / "root", limits=Limits(connection_limit=8))
    caplog.set_level(logging.WARNING, logger="kernel_builder.serve")  # what `kernel-builder serve` shows
    busy = []
    try:
        for _ in range(srv.connection_limit):  # each has sent a header and is still sending its body: not idle
            s = socket.create_connection(addr(srv.url), timeout=10)
            s.sendall(b"POST /api/repos/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            busy.append(s)
        time.sleep(0.3)
        with socket.create_connection(addr(srv.url), timeout=10) as s:
            assert s.recv(4096).startswith(b"HTTP/1.1 503")
        # the operator learns it too: one line with the count, not one per refused client
        assert [r.getMessage() for r in caplog.records if r.name == "kernel_builder.serve"] == \
            [f"refused 1 connection(s) with 503: all {srv.connection_limit} connections are busy"]
    finally:
        for s in busy:
            s.close()
        srv.shutdown()


def test_large_files_stream_to_the_same_git_objects(tmp_path):
    """A file above the in-memory bound (spooled), one with JSON's escaped '/', and the oids git would give."""
    (tmp_path / "t").write_text(f"{TOKEN} alice acme\n")
    srv = serve(tmp_path / "root", token_file=tmp_path / "t")
    try:
        api = HfApi(endpoint=srv.url, token=TOKEN)
        api.create_repo("acme/k", repo_type="kernel")
        big = os.urandom(12 << 20)
        slashes = b"\xff\xff\xff" * 1000  # base64 of this is all '/'
        b64 = base64.b64encode(slashes).decode().replace("/", "\\/")
        body = ndjson(HEADER, {"key": "file", "value": {"content": base64.b64encode(big).decode(), "path": "big.bin",
                                                        "encoding": "base64"}})
        body += ('{"key": "file", "value": {"path": "s.bin", "content": "' + b64 + '"}}\n').encode()
        s, _, raw = http(f"{srv.url}/api/kernels/acme/k/commit/main", "POST", body, token=TOKEN)
        assert s == 200, raw
        tree = {e.path: e.blob_id for e in api.list_repo_tree("acme/k", repo_type="kernel")}
        assert tree["big.bin"] == hashlib.sha1(b"blob %d\0" % len(big) + big).hexdigest()
        got = api.hf_hub_download("acme/k", "big.bin", repo_type="kernel", cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == big
        git = ["git", "--git-dir", str(tmp_path / "root" / "acme" / "k.git")]
        assert subprocess.run(git + ["cat-file", "blob", tree["s.bin"]], capture_output=True).stdout == slashes
        assert subprocess.run(git + ["fsck", "--strict"], capture_output=True).returncode == 0
        subprocess.run(git + ["gc", "-q", "--prune=now"], check=True)  # packed now: served through git
        again = api.hf_hub_download("acme/k", "big.bin", repo_type="kernel", cache_dir=tmp_path / "c2")
        assert Path(again).read_bytes() == big
        objects = tmp_path / "root" / "acme" / "k.git" / "objects"
        assert not [p for p in objects.rglob("*") if p.name.startswith(("tmp_obj_", "kb-spool-"))]
    finally:
        srv.shutdown()


def _mount_small_disk(path: Path) -> list[str]:
    """A 3 MiB tmpfs: root mounts it here; otherwise the server runs in its own user+mount namespace."""
    path.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], check=True)
        return []
    assert shutil.which("unshare"), "a full-disk test needs root or util-linux's unshare"
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=3m tmpfs "{path}" && exec "$0" "$@"']


def test_full_disk_is_507_and_leaves_no_temp_files(tmp_path):
    disk = tmp_path / "disk"
    wrap = _mount_small_disk(disk)
    (tmp_path / "tokens").write_text(f"{TOKEN} alice acme\n")
    proc = subprocess.Popen(wrap + [sys.executable, "-m", "kernel_builder", "serve", str(disk / "root"), "--port",
                                    "0", "--token-file", str(tmp_path / "tokens")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        HfApi(endpoint=url, token=TOKEN).create_repo("acme/k", repo_type="kernel")
        body = ndjson(HEADER, {"key": "file", "value": {"path": "big.bin", "encoding": "base64",
                                                        "content": base64.b64encode(os.urandom(6 << 20)).decode()}})
        s, headers, raw = http(f"{url}/api/kernels/acme/k/commit/main", "POST", body, token=TOKEN)
        assert s == 507 and "no space left" in headers["X-Error-Message"], raw
        if not wrap:  # the tmpfs is visible from here: fill it, then a create fails and leaves nothing half-made
            with open(disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            s, headers, _ = http(f"{url}/api/repos/create", "POST", json.dumps(
                {"name": "k2", "organization": "acme", "type": "kernel"}).encode(), token=TOKEN,
                ctype="application/json")
            assert s == 507 and "no space left" in headers["X-Error-Message"]
            assert sorted(p.name for p in (disk / "root" / "acme").iterdir()) == ["k.git"]
            assert not [p for p in (disk / "root").rglob("*") if p.name.startswith(("tmp_obj_", "kb-spool-"))]
        assert HfApi(endpoint=url, token=TOKEN).list_repo_files("acme/k", repo_type="kernel") == []
    finally:
        stop(proc)
        if not wrap:
            subprocess.run(["umount", str(disk)], check=False)
