"""The append-only audit log of `serve`: one JSON line per ref change (who, which repo and ref, old -> new).

Why a file of its own and not git's reflog: git drops a branch's reflog when the branch is deleted, and a
reflog has no notion of which token's user made the change. Each record is one `write` on a file opened with
O_APPEND, so concurrent writers never interleave inside a line; it is flushed to disk before the request is
answered. The log records what happened; the old commits themselves stay reachable under refs/kb-history/.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, user: str, repo: str, ref: str, old: str | None, new: str | None) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "user": user,
                 "repo": repo, "ref": ref, "old": old, "new": new,
                 "action": "create" if not old else ("delete" if not new else "update")}
        line = (json.dumps(entry, ensure_ascii=True) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
