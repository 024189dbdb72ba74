"""The hostile clients of scripts/load_test_hub.py: idle sockets, slow headers, oversized bodies, bad inputs.

Raw sockets and urllib on purpose: no real client would send these, which is the point.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import threading
import time
import urllib.error
import urllib.request


def _addr(url: str) -> tuple[str, int]:
    host, port = url.rsplit("/", 1)[1].split(":")
    return host, int(port)


def hold_idle(url: str, n: int, faults: dict) -> list[socket.socket]:
    """N connections that never send a byte (at the server's descriptor limit some are closed to make room)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(_addr(url), timeout=5))
        except OSError:
            break
    faults["idle"] = len(socks)
    return socks


def slow_clients(url: str, n: int, faults: dict, stop: threading.Event) -> None:
    """Each drips a request header a byte every 0.2 s; the server must end them: 408 after its header timeout,
    or a plain close when it needed the descriptor first (the connection limit closes the oldest idle one)."""
    header = b"GET /api/organizations/acme/overview HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 400
    socks, answers = [], []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(_addr(url), timeout=5))
        except OSError:
            pass
    for i in range(len(header)):
        if not socks or (stop.is_set() and i > 100):  # 100 bytes = 20 s: far past any header timeout
            break
        readable, _, _ = select.select(socks, [], [], 0)
        for s in readable:  # the server answered (or closed): read what it said
            answers.append(_answer(s))
            socks.remove(s)
            s.close()
        for s in list(socks):
            try:
                s.send(header[i:i + 1])
            except OSError:
                answers.append("closed")
                socks.remove(s)
        time.sleep(0.2)
    for s in socks:
        answers.append("still open")
        s.close()
    faults["slow"], faults["slow_408"] = n, answers.count("408")
    faults["slow_closed"] = answers.count("closed")


def _answer(s: socket.socket) -> str:
    s.settimeout(2)
    try:
        data = s.recv(64)
    except OSError:
        return "closed"
    return "408" if data.startswith(b"HTTP/1.1 408") else "closed" if not data else data[:12].decode("latin-1")


def oversized(url: str, n: int, limit: int, faults: dict) -> None:
    """Announce a body twice the limit, unauthenticated, send a little of it: the answer is 413 at once."""
    got = 0
    for _ in range(n):
        try:
            with socket.create_connection(_addr(url), timeout=10) as s:
                s.sendall(b"POST /api/kernels/acme/load-relu/commit/v1 HTTP/1.1\r\nHost: x\r\n"
                          + f"Content-Length: {2 * limit}\r\n\r\n".encode() + b"x" * 4096)
                got += s.recv(64).startswith(b"HTTP/1.1 413")
        except OSError:
            pass
    faults["oversized"], faults["oversized_413"] = n, got


def _request(url, method, body, token):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def bad_inputs(url: str, token: str, errors: list) -> tuple[int, int]:
    """Malformed requests of every kind; each must be a 4xx within 10 s."""
    head = _line({"key": "header", "value": {"summary": "s"}})
    r = f"{url}/api/kernels/acme/load-relu"
    b64 = base64.b64encode(b"x").decode()
    cases = [
        ("GET", f"{r}/revision/%E2%98%83", None), ("GET", f"{r}/revision/%0D%0A", None),
        ("GET", f"{r}/revision/%FF", None), ("GET", f"{r}/tree/v1?cursor=x", None),
        ("GET", f"{url}/api/kernels/acme/load-relu%0A/refs", None), ("GET", f"{url}/api/datasets/a/b", None),
        ("POST", f"{url}/api/repos/create", b'{"name": "x", "organization": "acme", "private": "false"}'),
        ("POST", f"{url}/api/repos/create", b'{"name": "x\\n", "organization": "acme"}'),
        ("POST", f"{url}/api/repos/create", b"[" * 50_000),
        ("POST", f"{r}/branch/x", b'{"startingPoint": []}'), ("POST", f"{r}/preupload/v1", b'{"files": [1]}'),
        ("POST", f"{r}/commit/v1", b"not json\n"), ("POST", f"{r}/commit/v1", b""),
        ("POST", f"{r}/commit/v1", head + _line({"key": "file", "value": {"path": ".GIT/config", "content": b64}})),
        ("POST", f"{r}/commit/v1", head + _line({"key": "file", "value": {"path": "../x", "content": b64}})),
        ("POST", f"{r}/commit/v1", head + _line({"key": "file", "value": {"path": "a", "content": "!!"}})),
        ("POST", f"{r}/commit/v1", head + _line({"key": "lfsFile", "value": {"path": "a"}})),
        ("POST", f"{r}/commit/v1", head + b'{"key": "file", "value": {"path": "a", "content": "QQ'),
        ("POST", f"{r}/commit/v1", _line({"key": "header", "value": {"parentCommit": 3}})),
        ("DELETE", f"{r}/branch/main", None), ("PUT", f"{r}/commit/v1", b"{}"),
    ]
    refused = 0
    for method, u, body in cases:
        status = _request(u, method, body, token)
        if 400 <= status < 500:
            refused += 1
        else:
            errors.append(f"bad input {method} {u[len(url):][:60]} {body[:40] if body else ''!r}: HTTP {status}")
    return len(cases), refused
