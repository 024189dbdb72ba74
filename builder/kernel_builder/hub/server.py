"""The HTTP server under `serve`: waitress, with the limits a hub on a shared network needs.

Why waitress: a maintained, pure-Python production WSGI server (no C build, so it installs wherever
kernel-builder does) whose main thread multiplexes every socket and only hands a request to a worker thread
once its header and body are complete. A slow or idle client therefore costs one descriptor, never a
thread, and a body is buffered by waitress (memory up to 512 KiB, then an unnamed temporary file) before the
application streams it (commit_body.py). waitress refuses oversized bodies (413) and headers (431) itself.

What waitress does not do and this module adds, in its one maintenance hook (run every second):
  * a request header must be complete within `header_timeout` of the connection opening or of the previous
    response: else 408 (when part of a header came) and close; a keep-alive connection idle that long is
    closed quietly;
  * a body that makes no progress for `body_timeout`, and a response the client stops reading for as long,
    close the connection (this also frees a worker blocked on a full output buffer);
  * at the connection limit a new connection is still accepted: the connection that has waited longest for
    a request header is closed to make room; when every connection is busy the newcomer gets a 503.
The connection limit is also kept under the process's descriptor limit (RLIMIT_NOFILE), so `accept` never
fails with EMFILE and `git` (which needs pipes) always has descriptors left.
"""

from __future__ import annotations

import logging
import resource
import socket
import time

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

FD_RESERVE = 64  # descriptors kept for git subprocesses, spool files, logs
REFUSAL_LOG_EVERY_S = 10.0  # a flood of 503s is one log line per interval, with the count, not one per refusal
_LOG = logging.getLogger("kernel_builder.serve")
FD_PER_THREAD = 8

_REFUSE_503 = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 2\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 46\r\n\r\n"
               b"every connection of this hub is busy; retry\r\n\r\n")
_REFUSE_408 = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 41\r\n\r\nthe request header took too long; retry\r\n")


def fd_bound_connection_limit(wanted: int, threads: int) -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - FD_RESERVE - FD_PER_THREAD * threads))


class _Channel(HTTPChannel):
    """A connection that remembers since when it has been waiting for a request header."""

    def __init__(self, *args, **kwargs):
        self.waiting_since = time.monotonic()
        super().__init__(*args, **kwargs)

    def service(self):
        try:
            super().service()
        finally:
            self.waiting_since = time.monotonic()

    def state(self) -> str:
        if self.requests:
            return "busy"
        if self.request is not None and self.request.headers_finished:
            return "body"
        return "header"

    def refuse(self, response: bytes) -> None:
        """Best effort, never blocking: a socket that cannot take a few bytes is closed without them."""
        try:
            self.socket.send(response)
            self.socket.shutdown(socket.SHUT_WR)  # the answer, then FIN, before any reset the close may cause
        except OSError:
            pass
        self.will_close = True


class HubWSGIServer(TcpWSGIServer):
    channel_class = _Channel

    def __init__(self, app, *, header_timeout: float, body_timeout: float, **kw):
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        super().__init__(app, **kw)

    def readable(self):
        """Always accept: making room is handle_accept's job (waitress would stop accepting at the limit,
        leaving new clients in the backlog behind idle sockets)."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting

    def maintenance(self, now):
        mono = time.monotonic()
        for ch in list(self.active_channels.values()):
            if ch.will_close or not isinstance(ch, _Channel):
                continue
            state = ch.state()
            if state == "header" and mono - ch.waiting_since > self.header_timeout:
                if ch.request is not None:  # part of a header came: say why it ends
                    ch.refuse(_REFUSE_408)
                else:
                    ch.will_close = True
            elif state in ("body", "busy") and now - ch.last_activity > self.body_timeout and \
                    (state == "body" or ch.total_outbufs_len):
                ch.will_close = True
                if state == "busy":
                    ch.handle_close()  # wakes a worker waiting for the client to read

    def handle_accept(self):
        if len(self.active_channels) >= self.adj.connection_limit and not self._evict_one():
            try:
                conn, _addr = self.accept() or (None, None)
            except OSError:
                return
            if conn is not None:
                self._note_refusal()
                try:
                    conn.setblocking(False)
                    conn.send(_REFUSE_503)
                except OSError:
                    pass
                conn.close()
            return
        super().handle_accept()

    def _note_refusal(self) -> None:
        """An operator must learn that clients are being turned away, without a log line per refused client."""
        self._refused = getattr(self, "_refused", 0) + 1
        now = time.monotonic()
        if now - getattr(self, "_refusal_logged", float("-inf")) >= REFUSAL_LOG_EVERY_S:
            _LOG.warning("refused %d connection(s) with 503: all %d connections are busy", self._refused,
                         self.adj.connection_limit)
            self._refused, self._refusal_logged = 0, now

    def _evict_one(self) -> bool:
        idle = [ch for ch in self.active_channels.values()
                if isinstance(ch, _Channel) and not ch.will_close and ch.state() == "header"]
        if not idle:
            return False
        oldest = min(idle, key=lambda ch: ch.waiting_since)
        if oldest.request is not None:  # it had begun a header: say why it ends
            oldest.refuse(_REFUSE_408)
        oldest.handle_close()  # now, not on the next loop: its descriptor is needed for the newcomer
        return True
