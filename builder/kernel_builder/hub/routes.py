"""The HTTP API of `serve`: the routing table first, then one handler per route (CONTRACT §6).

Routing is done on the raw request path split at '/' before unquoting, like the Hub: a revision such as
`refs%2Fheads%2Fv1` stays one component. Every refusal is a `StoreError` (status, one-line message, optional
X-Error-Code); a bug of ours is a 500 that says nothing about the request. Header values are always ASCII:
anything else in a message is escaped, so no client input can break the response.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request, Response

from .auth import ANONYMOUS_WRITER, Identity, TokenFile
from .commit import apply_commit
from .store import Repo, Store, StoreError, cut, check_path

_LOG = logging.getLogger("kernel_builder.serve")

REPO_TYPES = {"kernels": "kernel", "models": "model"}
PAGE_SIZE = 1000
MAX_JSON_BODY = 16 << 20  # create / preupload / branch bodies; a commit body is streamed instead

# (methods, path pattern, handler): {x} is one path component, {x*} the rest (maybe empty), {x+} the rest
ROUTES = [
    ("GET", "api/whoami-v2", "whoami"),
    ("POST", "api/repos/create", "create_repo"),
    ("POST", "api/validate-yaml", "validate_yaml"),
    ("GET", "api/organizations/{org}/overview", "org_overview"),
    ("GET", "api/{type}/{org}/{name}", "info"),
    ("GET", "api/{type}/{org}/{name}/revision/{rev}", "info"),
    ("GET", "api/{type}/{org}/{name}/refs", "refs"),
    ("GET", "api/{type}/{org}/{name}/tree/{rev}/{path*}", "tree"),
    ("POST", "api/{type}/{org}/{name}/preupload/{rev}", "preupload"),
    ("POST", "api/{type}/{org}/{name}/commit/{rev}", "commit"),
    ("POST", "api/{type}/{org}/{name}/branch/{branch}", "create_branch"),
    ("DELETE", "api/{type}/{org}/{name}/branch/{branch}", "delete_branch"),
    ("GET HEAD", "{type}/{org}/{name}/resolve/{rev}/{path+}", "resolve"),
    ("GET HEAD", "{org}/{name}/resolve/{rev}/{path+}", "resolve"),  # the model form huggingface_hub uses
]


def match(pattern: str, parts: list[str]) -> dict | None:
    """The pattern's parameters if `parts` fits it; {type} must name a repo type."""
    params = {}
    for i, want in enumerate(pattern.split("/")):
        if want.endswith(("*}", "+}")):
            rest = parts[i:]
            if want.endswith("+}") and not rest:
                return None
            params[want[1:-2]] = "/".join(rest)
            return params
        if i >= len(parts):
            return None
        if want.startswith("{"):
            params[want[1:-1]] = parts[i]
        elif want != parts[i]:
            return None
    if len(parts) != len(pattern.split("/")) or params.get("type", "kernels") not in REPO_TYPES:
        return None
    return params


def ascii_header(text: str, limit: int = 500) -> str:
    """A header value that is ASCII with no control characters, whatever the message quoted."""
    safe = text.encode("ascii", "backslashreplace").decode("ascii")
    safe = "".join(c if 32 <= ord(c) < 127 else f"\\x{ord(c):02x}" for c in safe)
    return safe[:limit]


def _json(obj, status=200, headers=None) -> Response:
    return Response(json.dumps(obj), status=status, mimetype="application/json", headers=headers or {})


def error_response(e: StoreError) -> Response:
    headers = {"X-Error-Code": ascii_header(e.code)} if e.code else {}
    headers["X-Error-Message"] = ascii_header(str(e))
    return _json({"error": str(e)[:2000]}, e.status, headers)


def _json_body(req: Request, required: bool = True):
    if (req.content_length or 0) > MAX_JSON_BODY:
        raise StoreError(413, f"a JSON request body is limited to {MAX_JSON_BODY >> 20} MiB")
    data = req.get_data(cache=False)
    if not data.strip() and not required:
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise StoreError(400, "the request body is not valid JSON") from None


class HubApp:
    """The WSGI application over a `Store`, with the rights of the token file (auth.py)."""

    def __init__(self, root: Path, token_file=None, trusted_orgs=(), require_read_token=False):
        self.store = Store(root)
        self.tokens = TokenFile(token_file)
        self.trusted = set(trusted_orgs)
        self.require_read_token = require_read_token

    # ---- WSGI ----
    def __call__(self, environ, start_response):
        req = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or urllib.parse.quote(req.path)
        raw_path = urllib.parse.urlsplit(raw).path
        try:
            parts = [urllib.parse.unquote(p, errors="strict") for p in raw_path.strip("/").split("/")]
            resp = self.route(req, parts)
        except UnicodeDecodeError:
            resp = error_response(StoreError(400, "the request path is not UTF-8"))
        except StoreError as e:
            resp = error_response(e)
        except ClientDisconnected:
            resp = error_response(StoreError(400, "client disconnected before the request body was complete"))
        except Exception:  # a bug of ours: in the server's log, and the client learns nothing about the internals
            _LOG.exception("internal error answering %s %s", req.method, raw_path[:200])
            resp = error_response(StoreError(500, "internal error of the hub (logged on the server)"))
        if req.method == "HEAD":
            resp.direct_passthrough = False
        return resp(environ, start_response)

    def route(self, req: Request, parts: list[str]) -> Response:
        allowed = set()
        for methods, pattern, handler in ROUTES:
            params = match(pattern, parts)
            if params is None:
                continue
            if req.method in methods.split():
                params.pop("type", None)
                return getattr(self, handler)(req, **params)
            allowed.update(methods.split())
        if allowed:
            raise StoreError(405, f"{req.method} is not supported here (allowed: {', '.join(sorted(allowed))})")
        raise StoreError(404, "not found")

    # ---- who ----
    def _who(self, req: Request, write: bool) -> Identity | None:
        """The token's identity; 401 with no token where one is needed, 403 (401 on reads) for a wrong one."""
        if self.tokens.path is None:
            return ANONYMOUS_WRITER  # no token file: an open hub (local experiments only)
        auth = req.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        who = self.tokens.lookup(token) if token else None
        if write or self.require_read_token:
            if not token:
                raise StoreError(401, "Authorization header with a token is required")
            if who is None:
                raise StoreError(403 if write else 401, "Invalid credentials in Authorization header")
        return who

    def _repo(self, req: Request, org: str, name: str, write: bool) -> tuple[Repo, Identity | None]:
        who = self._who(req, write)
        repo = self.store.get(org, name)
        if repo.private and (who is None or not who.may_write(org)):
            raise StoreError(404, f"Repository {org}/{name} not found", "RepoNotFound")
        if write and not who.may_write(org):
            raise StoreError(403, f"{who.user} may not write to {org}/ (token file: TOKEN USER ORGS)",
                             "Forbidden")
        return repo, who

    # ---- handlers ----
    def whoami(self, req: Request) -> Response:
        who = self._who(req, write=False)
        if who is None:
            raise StoreError(401, "Invalid user token")
        return _json({"type": "user", "name": who.user, "fullname": who.user,
                      "orgs": [{"name": o} for o in sorted(who.orgs - {"*"})],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "serve", "role": "write"}}})

    def validate_yaml(self, req: Request) -> Response:
        return _json({"errors": [], "warnings": []})

    def org_overview(self, req: Request, org: str) -> Response:
        self._who(req, write=False)
        return _json({"name": org, "fullname": org, "type": "org", "trustedKernelPublisher": org in self.trusted})

    def create_repo(self, req: Request) -> Response:
        who = self._who(req, write=True)
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise StoreError(400, "expected a JSON object with a string 'name'")
        rtype, org = body.get("type") or "model", body.get("organization") or who.user
        private, visibility = body.get("private"), body.get("visibility")
        if rtype not in REPO_TYPES.values():
            raise StoreError(400, f"this hub stores kernel (and model) repos, not {cut(rtype, 60)}")
        if private is not None and not isinstance(private, bool):
            raise StoreError(400, f"'private' must be true or false, not {cut(private, 60)}")
        if visibility not in (None, "public", "private"):
            raise StoreError(400, f"'visibility' must be 'public' or 'private', not {cut(visibility, 60)}")
        name = body["name"]
        self.store._path(org, name)  # 400 for a bad id before any right is judged
        if not who.may_write(org):
            raise StoreError(403, f"{who.user} may not create repos in {org}/", "Forbidden")
        url = f"{req.host_url}{'' if rtype == 'model' else 'kernels/'}{org}/{name}"
        try:
            self.store.create(org, name, private is True or visibility == "private", who.user)
        except StoreError as e:
            if e.status != 409:
                raise
            # like the Hub: the 409 body carries the url, which huggingface_hub's exist_ok path reads
            return _json({"error": str(e), "url": url}, 409, {"X-Error-Message": ascii_header(str(e))})
        return _json({"url": url, "name": f"{org}/{name}"})

    def info(self, req: Request, org: str, name: str, rev: str = "main") -> Response:
        repo, _ = self._repo(req, org, name, write=False)
        sha = repo.resolve(rev)
        ts = int(repo.git("show", "-s", "--format=%ct", sha).decode().strip())
        when = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return _json({"id": f"{org}/{name}", "author": org, "sha": sha, "private": repo.private,
                      "lastModified": when, "siblings": [{"rfilename": f} for f in sorted(repo.files(sha))],
                      "tags": []})

    def refs(self, req: Request, org: str, name: str) -> Response:
        repo, _ = self._repo(req, org, name, write=False)
        return _json({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                                   for b, sha in sorted(repo.branches().items())], "converts": [], "tags": []})

    def tree(self, req: Request, org: str, name: str, rev: str, path: str) -> Response:
        repo, _ = self._repo(req, org, name, write=False)
        sha = repo.resolve(rev)
        if path:
            check_path(path)
        recursive = req.args.get("recursive", "false").lower() in ("1", "true")
        cursor = req.args.get("cursor", "0")
        if not cursor.isdigit() or len(cursor) > 12:
            raise StoreError(400, f"invalid cursor {cut(cursor, 40)}")
        entries, start = repo.list_tree(sha, path, recursive), int(cursor)
        headers = {}
        if start + PAGE_SIZE < len(entries):
            args = dict(req.args, cursor=str(start + PAGE_SIZE))
            headers["Link"] = f'<{req.base_url}?{urllib.parse.urlencode(args)}>; rel="next"'
        body = [{"type": e.type, "oid": e.oid, "path": e.path, **({"size": e.size} if e.type == "file" else {})}
                for e in entries[start:start + PAGE_SIZE]]
        return _json(body, headers={k: ascii_header(v, 4000) for k, v in headers.items()})

    def preupload(self, req: Request, org: str, name: str, rev: str) -> Response:
        """Every file goes in the commit body ("regular"): no LFS or xet server is needed. The current oid lets
        huggingface_hub skip files that did not change."""
        repo, _ = self._repo(req, org, name, write=True)
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            raise StoreError(400, "expected {'files': [...]}")
        try:
            sha = repo.resolve(rev)
        except StoreError:
            sha = None
        current = repo.files(sha) if sha else {}
        out = []
        for f in body["files"]:
            path = check_path(f.get("path") if isinstance(f, dict) else None)
            oid = current.get(path, (None, None))[1]
            out.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return _json({"files": out, "commitOid": sha})

    def commit(self, req: Request, org: str, name: str, rev: str) -> Response:
        repo, who = self._repo(req, org, name, write=True)
        if req.args.get("create_pr") in ("1", "true"):
            raise StoreError(400, "pull requests are not supported by this hub; push to a branch instead")
        branch = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
        new = apply_commit(repo, branch, req.stream, who.user)
        prefix = f"{req.host_url}kernels/{org}/{name}"
        return _json({"success": True, "commitOid": new, "commitUrl": f"{prefix}/commit/{new}", "hookOutput": "",
                      "pullRequestUrl": None})

    def create_branch(self, req: Request, org: str, name: str, branch: str) -> Response:
        repo, who = self._repo(req, org, name, write=True)
        body = _json_body(req, required=False)
        if not isinstance(body, dict):
            raise StoreError(400, "expected a JSON object, e.g. {'startingPoint': 'main'}")
        start = body.get("startingPoint")
        if start is not None and not isinstance(start, str):
            raise StoreError(400, f"'startingPoint' must be a branch or commit, not {cut(start, 60)}")
        with repo.lock:
            start = repo.resolve(start or "main")
            if branch in repo.branches():
                raise StoreError(409, f"branch {cut(branch, 100)} already exists", "Conflict")
            repo.set_branch(branch, start, None, who.user)
        return _json({"name": branch, "targetCommit": start})

    def delete_branch(self, req: Request, org: str, name: str, branch: str) -> Response:
        repo, who = self._repo(req, org, name, write=True)
        with repo.lock:
            repo.delete_branch(branch, who.user)
        return _json({})

    def resolve(self, req: Request, org: str, name: str, rev: str, path: str) -> Response:
        repo, _ = self._repo(req, org, name, write=False)
        check_path(path)
        sha = repo.resolve(rev)
        blob = repo.blob_at(sha, path)
        if blob is None:
            raise StoreError(404, f"{cut(path)} not found at {cut(rev, 100)}", "EntryNotFound")
        oid, size = blob
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "none"}
        data = [b""] if req.method == "HEAD" else repo.blob_chunks(oid)
        resp = Response(data, mimetype="application/octet-stream", headers=headers, direct_passthrough=True)
        resp.headers["Content-Length"] = str(size)
        return resp
