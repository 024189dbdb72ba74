"""Who a request is, and what it may do: the token file of `serve`.

Format, one token per line (blank lines and lines starting with `#` are ignored):

    TOKEN USER [ORG,ORG,...]      e.g.  tok-a  user-a  acme,research      or  tok-ops  ops  *

A token may create repos, commit, create and delete branches in its USER's namespace and in the listed orgs
(`*`: every org), and read the private repos there. Anything else is refused: 403, or 404 for a private repo it
may not read (its existence is not disclosed). Public repos are readable by anyone (by any valid token with
`--read-token`). The older formats still load, with no org rights: `TOKEN USER` writes only to USER/…, a
bare `TOKEN` is the user `user`. The file is re-read when it changes, so tokens rotate without a restart.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .store import NAME_RE, StoreError


@dataclass(frozen=True)
class Identity:
    user: str
    orgs: frozenset = field(default_factory=frozenset)  # "*" = every org

    def may_write(self, org: str) -> bool:
        return org == self.user or "*" in self.orgs or org in self.orgs


ANONYMOUS_WRITER = Identity("anonymous", frozenset({"*"}))  # no token file at all: an open hub


def parse_tokens(text: str, source: str = "token file") -> tuple[dict[str, Identity], list[str]]:
    """token -> identity, and one warning per line that was skipped or read in the old format."""
    tokens, notes = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 3:
            notes.append(f"{source}:{n}: more than TOKEN USER ORGS; line ignored")
            continue
        user = parts[1] if len(parts) > 1 else "user"
        orgs = frozenset(o for o in (parts[2].split(",") if len(parts) > 2 else []) if o)
        bad = [o for o in (user, *orgs) if o != "*" and not NAME_RE.fullmatch(o)] + ([user] if user == "*" else [])
        if bad:
            notes.append(f"{source}:{n}: {bad[0][:100]!r} is not a user or org name; line ignored")
            continue
        if len(parts) == 1:
            notes.append(f"{source}:{n}: no USER column: read as user 'user' (writes only to user/...)")
        tokens[parts[0]] = Identity(user, orgs)
    return tokens, notes


class TokenFile:
    """The parsed file, re-read only when its mtime or size changes (a request does not pay for a parse)."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._stamp, self._tokens, self.notes = None, {}, []
        self._lock = threading.Lock()
        if self.path:
            self.lookup("")  # reads it now: a missing or unreadable file fails at start, not on a request

    def lookup(self, token: str) -> Identity | None:
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    self._tokens, self.notes = parse_tokens(self.path.read_text(errors="replace"), str(self.path))
                    self._stamp = stamp
            except OSError as e:
                if self._stamp is None:
                    raise StoreError(503, f"token file unreadable: {e.strerror}") from None
            # compare every token in constant time: which prefix matched must not leak through timing
            found = None
            for known, ident in self._tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = ident
            return found
