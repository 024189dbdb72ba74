"""`kernel-builder serve ROOT`: a private kernel hub speaking the subset of the Hub API that huggingface_hub's
upload calls and the `kernels` loader use (CONTRACT §6), so a team can publish and `get_kernel` offline.

Routing is done on the raw request path split at '/' before unquoting, like the Hub: a revision such as
`refs%2Fheads%2Fv1` stays one component. werkzeug provides the HTTP layer (threaded server, request parsing).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .store import Repo, Store, StoreError, check_path

REPO_TYPES = {"kernels": "kernel", "models": "model"}
PAGE_SIZE = 1000


def _json(obj, status=200, headers=None) -> Response:
    return Response(json.dumps(obj), status=status, mimetype="application/json", headers=headers or {})


def _error(e: StoreError) -> Response:
    headers = {"X-Error-Code": e.code} if e.code else {}
    headers["X-Error-Message"] = str(e)[:500]
    return _json({"error": str(e)}, e.status, headers)


class HubApp:
    """The WSGI application. Tokens come from `token_file` (one per line, optionally `TOKEN USERNAME`)."""

    def __init__(self, root: Path, token_file=None, trusted_orgs=(), require_read_token=False):
        self.store = Store(root)
        self.token_file = Path(token_file) if token_file else None
        self.trusted = set(trusted_orgs)
        self.require_read_token = require_read_token

    # ---- auth ----
    def _tokens(self) -> dict[str, str]:
        """Re-read on every request so tokens can be rotated without a restart."""
        if not self.token_file:
            return {}
        out = {}
        for line in self.token_file.read_text().splitlines():
            parts = line.split()
            if parts and not parts[0].startswith("#"):
                out[parts[0]] = parts[1] if len(parts) > 1 else "user"
        return out

    def _user(self, req: Request, write: bool) -> str | None:
        """The token's user; 401 with no token where one is needed, 403 with a token we do not know."""
        if self.token_file is None:
            return "anonymous" if write else None  # no token file: an open hub (local experiments only)
        auth = req.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        user = self._tokens().get(token) if token else None
        if write or self.require_read_token:
            if not token:
                raise StoreError(401, "Authorization header with a token is required")
            if user is None:
                raise StoreError(403 if write else 401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, req: Request, org: str, name: str, write: bool) -> tuple[Repo, str | None]:
        user = self._user(req, write)
        repo = self.store.get(org, name)
        if repo.private and user is None:
            raise StoreError(404, f"Repository {org}/{name} not found", "RepoNotFound")
        return repo, user

    # ---- WSGI ----
    def __call__(self, environ, start_response):
        req = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or urllib.parse.quote(req.path)
        raw_path = urllib.parse.urlsplit(raw).path
        parts = [urllib.parse.unquote(p) for p in raw_path.strip("/").split("/")]
        try:
            resp = self.route(req, parts)
        except StoreError as e:
            resp = _error(e)
        except ClientDisconnected:
            resp = _error(StoreError(400, "client disconnected before the request body was complete"))
        if req.method == "HEAD":
            resp.direct_passthrough = False
        return resp(environ, start_response)

    def route(self, req: Request, p: list[str]) -> Response:
        m = req.method
        if p == ["api", "whoami-v2"]:
            user = self._user(req, write=False)
            if user is None:
                raise StoreError(401, "Invalid user token")
            return _json({"type": "user", "name": user, "fullname": user,
                          "orgs": [{"name": o} for o in sorted(self.trusted)],
                          "auth": {"type": "access_token", "accessToken": {"displayName": "serve", "role": "write"}}})
        if p == ["api", "repos", "create"] and m == "POST":
            return self.create_repo(req)
        if p == ["api", "validate-yaml"] and m == "POST":
            return _json({"errors": [], "warnings": []})
        if len(p) == 4 and p[:2] == ["api", "organizations"] and p[3] == "overview":
            self._user(req, write=False)
            return _json({"name": p[2], "fullname": p[2], "type": "org",
                          "trustedKernelPublisher": p[2] in self.trusted})
        if len(p) >= 4 and p[0] == "api" and p[1] in REPO_TYPES:
            return self.api(req, p[2], p[3], p[4:])
        # /kernels/<org>/<name>/resolve/<rev>/<path> and the model form /<org>/<name>/resolve/...
        q = p[1:] if p and p[0] in REPO_TYPES else p
        if len(q) >= 5 and q[2] == "resolve" and m in ("GET", "HEAD"):
            return self.resolve(req, q[0], q[1], q[3], "/".join(q[4:]))
        raise StoreError(404, "not found")

    def api(self, req: Request, org: str, name: str, rest: list[str]) -> Response:
        m, kind = req.method, (rest[0] if rest else "")
        write = m in ("POST", "PUT", "DELETE")
        repo, user = self._repo(req, org, name, write)
        if not rest and m == "GET":
            return self.info(repo, org, name, repo.resolve("main"))
        if kind == "revision" and len(rest) == 2 and m == "GET":
            return self.info(repo, org, name, repo.resolve(rest[1]))
        if kind == "refs" and m == "GET":
            return _json({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                                       for b, sha in sorted(repo.branches().items())], "converts": [], "tags": []})
        if kind == "tree" and len(rest) >= 2 and m == "GET":
            return self.tree(req, repo, rest[1], "/".join(rest[2:]))
        if kind == "preupload" and len(rest) == 2 and m == "POST":
            return self.preupload(req, repo, rest[1])
        if kind == "commit" and len(rest) == 2 and m == "POST":
            return self.commit(req, repo, org, name, rest[1], user)
        if kind == "branch" and len(rest) == 2 and m == "POST":
            body = req.get_json(silent=True) or {}
            with repo.lock:
                start = repo.resolve(body.get("startingPoint") or "main")
                if rest[1] in repo.branches():
                    raise StoreError(409, f"branch {rest[1]} already exists", "Conflict")
                repo.set_branch(rest[1], start, None)
            return _json({"name": rest[1], "targetCommit": start})
        if kind == "branch" and len(rest) == 2 and m == "DELETE":
            with repo.lock:
                repo.delete_branch(rest[1])
            return _json({})
        raise StoreError(404 if m in ("GET", "HEAD") else 405, f"{m} /{'/'.join(rest)} is not supported")

    # ---- handlers ----
    def create_repo(self, req: Request) -> Response:
        user = self._user(req, write=True)
        body = req.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise StoreError(400, "expected a JSON body with 'name'")
        rtype = body.get("type") or "model"
        if rtype not in REPO_TYPES.values():
            raise StoreError(400, f"this hub stores kernel (and model) repos, not {rtype!r}")
        org = body.get("organization") or user
        private = body.get("private") or body.get("visibility") == "private"
        prefix = "" if rtype == "model" else "kernels/"
        url = f"{req.host_url}{prefix}{org}/{body['name']}"
        try:
            self.store.create(org, body["name"], bool(private), user)
        except StoreError as e:
            if e.status != 409:
                raise
            # like the Hub: the 409 body carries the url, which huggingface_hub's exist_ok path reads
            return _json({"error": str(e), "url": url}, 409, {"X-Error-Message": str(e)})
        return _json({"url": url, "name": f"{org}/{body['name']}"})

    def info(self, repo: Repo, org: str, name: str, sha: str) -> Response:
        ts = int(repo.git("show", "-s", "--format=%ct", sha).decode().strip())
        when = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        files = sorted(repo.files(sha))
        return _json({"id": f"{org}/{name}", "author": org, "sha": sha, "private": repo.private,
                      "lastModified": when, "siblings": [{"rfilename": f} for f in files], "tags": []})

    def tree(self, req: Request, repo: Repo, rev: str, sub: str) -> Response:
        sha = repo.resolve(rev)
        if sub:
            check_path(sub)
        recursive = req.args.get("recursive", "false").lower() in ("1", "true")
        entries = repo.list_tree(sha, sub, recursive)
        try:
            start = int(req.args.get("cursor", "0"))
        except ValueError:
            raise StoreError(400, "invalid cursor") from None
        page = entries[start:start + PAGE_SIZE]
        headers = {}
        if start + PAGE_SIZE < len(entries):
            args = dict(req.args, cursor=str(start + PAGE_SIZE))
            headers["Link"] = f'<{req.base_url}?{urllib.parse.urlencode(args)}>; rel="next"'
        body = [{"type": e.type, "oid": e.oid, "path": e.path, **({"size": e.size} if e.type == "file" else {})}
                for e in page]
        return _json(body, headers=headers)

    def preupload(self, req: Request, repo: Repo, rev: str) -> Response:
        """Every file goes in the commit body ("regular"): no LFS or xet server is needed. The current oid lets
        huggingface_hub skip files that did not change."""
        body = req.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            raise StoreError(400, "expected {'files': [...]}")
        try:
            sha = repo.resolve(rev)
        except StoreError:
            sha = None
        out = []
        for f in body["files"]:
            path = check_path(f.get("path") if isinstance(f, dict) else None)
            blob = repo.blob_at(sha, path) if sha else None
            out.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": blob[0] if blob else None})
        return _json({"files": out, "commitOid": sha})

    def _read_ops(self, req: Request, repo: Repo) -> tuple[dict, list[tuple[str, str, str | None]]]:
        """Parses the NDJSON commit body, writing each file's blob as it arrives (unreferenced until update-ref)."""
        header, ops = None, []
        for n, line in enumerate(req.stream, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError):
                raise StoreError(400, f"commit payload line {n}: not a JSON object with key and value") from None
            if not isinstance(value, dict):
                raise StoreError(400, f"commit payload line {n}: value must be an object")
            if key == "header":
                header = value
                continue
            if header is None:
                raise StoreError(400, "commit payload must start with a header line")
            path = check_path(value.get("path", "").rstrip("/") if key == "deletedFolder" else value.get("path"))
            if key == "file":
                if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                    raise StoreError(400, f"{path}: file content must be a base64 string")
                try:
                    data = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, ValueError):
                    raise StoreError(400, f"{path}: invalid base64 content") from None
                ops.append(("file", path, repo.write_blob(data)))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, path, None))
            elif key == "lfsFile":
                raise StoreError(400, f"{path}: LFS uploads are not supported; this hub takes regular files")
            else:
                raise StoreError(400, f"commit payload line {n}: unknown key {key!r}")
        if header is None:
            raise StoreError(400, "empty commit payload")
        return header, ops

    def commit(self, req: Request, repo: Repo, org: str, name: str, rev: str, user: str) -> Response:
        if req.args.get("create_pr") in ("1", "true"):
            raise StoreError(400, "pull requests are not supported by this hub; push to a branch instead")
        branch = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
        header, ops = self._read_ops(req, repo)
        message = str(header.get("summary") or "update")
        if header.get("description"):
            message += "\n\n" + str(header["description"])
        with repo.lock:  # one commit per repo at a time; update-ref's CAS guards against other processes too
            old = repo.resolve(branch)
            parent = header.get("parentCommit")
            if parent and parent != old:
                raise StoreError(412, f"parentCommit {parent} is not the head of {branch} ({old})", "Conflict")
            files = repo.files(old)
            for kind, path, oid in ops:
                if kind == "file":
                    files = {k: v for k, v in files.items() if not k.startswith(path + "/")}
                    files[path] = ("100644", oid)
                elif kind == "deletedFile":
                    if files.pop(path, None) is None:
                        raise StoreError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                else:
                    gone = [k for k in files if k.startswith(path + "/")]
                    if not gone:
                        raise StoreError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for k in gone:
                        del files[k]
            for path in files:  # a file cannot also be a folder
                for i in range(path.count("/")):
                    if path.rsplit("/", i + 1)[0] in files:
                        raise StoreError(400, f"{path}: a parent folder is a file in this commit")
            new = repo.make_commit(old, files, message, user or "anonymous")
            repo.set_branch(branch, new, old)
        prefix = f"{req.host_url}kernels/{org}/{name}"
        return _json({"success": True, "commitOid": new, "commitUrl": f"{prefix}/commit/{new}", "hookOutput": "",
                      "pullRequestUrl": None})

    def resolve(self, req: Request, org: str, name: str, rev: str, path: str) -> Response:
        repo, _ = self._repo(req, org, name, write=False)
        check_path(path)
        sha = repo.resolve(rev)
        blob = repo.blob_at(sha, path)
        if blob is None:
            raise StoreError(404, f"{path} not found at {rev}", "EntryNotFound")
        oid, size = blob
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Content-Length": str(size),
                   "Accept-Ranges": "none"}
        data = b"" if req.method == "HEAD" else repo.read_blob(oid)
        resp = Response(data, mimetype="application/octet-stream", headers=headers)
        resp.headers["Content-Length"] = str(size)
        return resp


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # tests and library use: no per-request stderr noise
        pass


class HubServer:
    """A running `serve()`: `.url`, `.shutdown()`; the werkzeug server runs in a daemon thread."""

    def __init__(self, app: HubApp, host: str, port: int, quiet: bool = True):
        self.app = app
        self._srv = make_server(host, port, app, threaded=True, request_handler=_QuietHandler if quiet else None)
        self.url = f"http://{host}:{self._srv.server_port}"
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=10)


def serve(root: Path, host: str = "127.0.0.1", port: int = 0, token_file=None, trusted_orgs=(),
          require_read_token: bool = False, quiet: bool = True) -> HubServer:
    return HubServer(HubApp(Path(root), token_file, trusted_orgs, require_read_token), host, port, quiet)


def run(args: argparse.Namespace) -> int:
    srv = serve(args.root, args.host, args.port, args.token_file, args.trusted_org, args.read_token,
                quiet=False)
    print(f"serving {args.root} at {srv.url} (HF_ENDPOINT={srv.url})", flush=True)
    if not args.token_file:
        print("warning: no --token-file: anyone who can reach this port can write", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.shutdown()
    return 0
