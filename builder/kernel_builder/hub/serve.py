"""`kernel-builder serve ROOT`: a private kernel hub speaking the subset of the Hub API that huggingface_hub's
upload calls and the `kernels` loader use (CONTRACT §6), so a team can publish and `get_kernel` offline.

The pieces: `routes.py` (the API, one handler per route), `auth.py` (the token file and who may write
where), `commit.py` + `commit_body.py` (a commit streamed into git objects), `store.py` + `objects.py` +
`audit.py` (bare git repositories, history refs, the audit log), `server.py` (waitress with timeouts and
connection limits). This module only starts and stops them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from .routes import HubApp

STOP_GRACE_S = 30  # SIGTERM / Ctrl-C: how long requests already running may take to finish


@dataclass
class Limits:
    """What one client may cost the hub. Defaults: a 2 GiB body (no LFS: a file travels base64 in the NDJSON
    commit, ~1.35x its size, so ~1.5 GB of files per commit), 10 s to send a request header."""

    max_body_size: int = 2 << 30
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    connection_limit: int = 500
    threads: int = 8


class HubServer:
    """A running `serve()`: `.url`, `.shutdown()`; waitress's loop runs in a daemon thread."""

    def __init__(self, app: HubApp, host: str, port: int, limits: Limits | None = None, quiet: bool = True):
        from .server import HubWSGIServer, fd_bound_connection_limit

        self.app = app
        for name in ("waitress", "kernel_builder.serve"):  # library use and tests: errors only
            logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.WARNING)
        limits = limits or Limits()
        self.connection_limit = fd_bound_connection_limit(limits.connection_limit, limits.threads)
        self._srv = HubWSGIServer(
            app, header_timeout=limits.header_timeout, body_timeout=limits.body_timeout, host=host, port=port,
            threads=limits.threads, connection_limit=self.connection_limit, cleanup_interval=1,
            channel_timeout=int(max(limits.header_timeout, limits.body_timeout)) + 1,
            max_request_body_size=limits.max_body_size, recv_bytes=256 * 1024, asyncore_use_poll=True,
            ident="kernel-builder", expose_tracebacks=False)
        self.url = f"http://{host}:{self._srv.effective_port}"
        self._thread = threading.Thread(target=self._run, daemon=True, name="kb-serve")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._srv.run()
        except (OSError, ValueError):  # the map closed under the loop by shutdown()
            pass

    def quiescent(self) -> bool:
        """No connection open and no request queued or running: what a client that went away had sent has
        been answered or dropped (scripts/atomic_upload_check.py waits for this before reading the branch)."""
        d = self._srv.task_dispatcher
        return not self._srv.active_channels and not d.queue and d.active_count == 0

    def shutdown(self, grace: float = 5) -> None:
        """Stop accepting, let the requests already running finish (up to `grace` seconds), then close: a commit
        cut off later still changes nothing (the branch moves in one compare-and-swap), but one that finishes
        is not lost to a routine restart."""
        from waitress import wasyncore

        self._srv.accepting = False
        self._srv.task_dispatcher.shutdown(timeout=grace)
        self._srv.close()
        wasyncore.close_all(self._srv._map, ignore_all=True)
        self._thread.join(timeout=10)


def serve(root: Path, host: str = "127.0.0.1", port: int = 0, token_file=None, trusted_orgs=(),
          require_read_token: bool = False, quiet: bool = True, limits: Limits | None = None) -> HubServer:
    app = HubApp(Path(root), token_file, trusted_orgs, require_read_token)
    return HubServer(app, host, port, limits or Limits(), quiet)


def run(args: argparse.Namespace) -> int:
    limits = Limits(**{k: v for k in ("max_body_size", "header_timeout", "connection_limit", "threads")
                       if (v := getattr(args, k, None)) is not None})
    from ..errors import UsageError
    from .store import StoreError

    try:
        srv = serve(args.root, args.host, args.port, args.token_file, args.trusted_org, args.read_token,
                    quiet=False, limits=limits)
    except StoreError as e:  # an unreadable token file
        raise UsageError(f"--token-file {args.token_file}: {e}") from None
    except OSError as e:  # the port is taken, the root cannot be created
        raise UsageError(f"serve {args.root} on {args.host}:{args.port}: {e.strerror or e}") from None
    for note in srv.app.tokens.notes:
        print(f"warning: {note}", flush=True)
    print(f"serving {args.root} at {srv.url} (HF_ENDPOINT={srv.url}); at most {srv.connection_limit} "
          f"connections, bodies up to {limits.max_body_size >> 20} MiB; audit log "
          f"{srv.app.store.audit.path}", flush=True)
    if not args.token_file:
        print("warning: no --token-file: anyone who can reach this port can write", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: as graceful as Ctrl-C
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    print(f"stopping: requests in flight get up to {STOP_GRACE_S} s", flush=True)
    srv.shutdown(grace=STOP_GRACE_S)
    print("stopped", flush=True)
    return 0
