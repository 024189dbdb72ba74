"""Storage for `kernel-builder serve`: one bare git repository per kernel repo, driven by git plumbing.

Why git: the Hub's model is git (branches, commit shas, blob oids that huggingface_hub compares to skip
unchanged files), so keeping real git objects gives real history and the exact oids clients expect.
Why plumbing: a commit is built entirely out of band (blobs written by `objects.py`, a tree from a throwaway
index, `commit-tree`) and only becomes visible through one compare-and-swap `update-ref` transaction. A client
that disconnects mid-upload leaves unreferenced objects at worst, never a half-written branch.
Why history refs: git drops a deleted branch's reflog with the branch, so the same transaction that moves or
deletes a branch also creates refs/kb-history/<UTC time>/<branch> at its old commit; with the audit log
(audit.py) any change can be seen and undone (`git update-ref refs/heads/B <old>`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import EnvironmentProblem, clip
from ..tools import run
from .audit import AuditLog
from .objects import BlobSpool, NoSpace, loose_blob_chunks

# fullmatch everywhere: `$` would also match before a trailing newline
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SHA_RE = re.compile(r"[0-9a-f]{40}")
REF_TIMEOUT = 30.0  # seconds one ref transaction may take; a lock file twice as old is a dead writer's
STALE_LOCK_S = 2 * REF_TIMEOUT


class StoreError(Exception):
    """A request the store refuses; `status` and `code` become the HTTP status and X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def check_path(path: object) -> str:
    """A file path inside a repo: relative, POSIX, no `..`/`.`/empty parts, no backslash or NUL, no `.git`."""
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise StoreError(400, f"invalid path {cut(path)}")
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or ord(c) == 127 for c in path)):
        raise StoreError(400, f"invalid path {cut(path)}: must be relative, without '..', backslashes or "
                              "control characters")
    if any(_git_name(p) for p in parts):
        raise StoreError(400, f"invalid path {cut(path)}: '.git' (in any case) is reserved by git")
    return path


def _git_name(part: str) -> bool:
    """`.git`, `.GIT`, `.git.` and the 8.3 alias `git~1` all name git's own folder on some filesystem; git
    itself refuses them in trees (core.protectNTFS/HFS), so they would silently vanish from a commit."""
    p = part.lower().rstrip(". ")
    return p in (".git", "git~1")


def cut(value: object, n: int = 200) -> str:
    """A request's value as an error quotes it: its repr, clipped."""
    return clip(repr(value), n)


@dataclass
class Entry:
    path: str
    type: str  # "file" | "directory"
    oid: str
    size: int = 0



def _ref_failure(branch: str, stderr: str) -> StoreError:
    """Why update-ref refused, said precisely: a full disk, a live lock, or a branch that moved."""
    if "No space left" in stderr or "Disk quota" in stderr:
        return _git_failure("git update-ref", stderr)
    if ".lock': File exists" in stderr:
        return StoreError(409, f"branch {branch} is being written by another writer; retry", "Conflict")
    return StoreError(409, f"branch {branch} moved concurrently; retry", "Conflict")


def _git_failure(what: str, stderr: str) -> StoreError:
    if "No space left" in stderr or "Disk quota" in stderr:
        return StoreError(507, f"{what}: no space left on the hub's disk", "InsufficientStorage")
    return StoreError(500, f"{what} failed: {stderr.strip()[:300]}")


class Repo:
    """One bare repository. Reads are lock-free (git objects are immutable); writes hold `lock`."""

    def __init__(self, path: Path, repo_id: str = "", audit: AuditLog | None = None):
        self.path, self.repo_id, self.audit = path, repo_id, audit
        self.lock = threading.Lock()

    def _run(self, args: tuple, input: bytes | None, env: dict | None, timeout: float | None):
        e = dict(os.environ, GIT_DIR=str(self.path), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
        e.update(env or {})
        try:
            return run(["git", *args], f"git {args[0]}", input=input, env=e, text=False,
                       **({"timeout": timeout} if timeout else {}))
        except EnvironmentProblem as problem:  # no git, or a hung one: the request fails, the server lives
            raise StoreError(500, str(problem)) from None

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None, check: bool = True,
            timeout: float | None = None) -> bytes:
        r = self._run(args, input, env, timeout)
        if check and r.returncode != 0:
            raise _git_failure(f"git {args[0]}", r.stderr.decode(errors="replace"))
        return r.stdout if check else (r.stdout if r.returncode == 0 else None)

    # ---- metadata ----
    @property
    def meta(self) -> dict:
        f = self.path / "hub.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    @property
    def private(self) -> bool:
        return self.meta.get("private") is True

    # ---- refs ----
    def branches(self) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads/")
        return dict(line.split(" ", 1) for line in out.decode().splitlines() if line)

    def resolve(self, rev: object) -> str:
        """A branch name (optionally `refs/heads/…`) or a full commit sha -> commit sha; 404 otherwise."""
        if not isinstance(rev, str):
            raise StoreError(400, f"a revision is a string, not {cut(rev)}")
        name = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
        if SHA_RE.fullmatch(name):
            if self.git("cat-file", "-e", f"{name}^{{commit}}", check=False) is not None:
                return name
        elif BRANCH_RE.fullmatch(name):
            sha = self.branches().get(name)
            if sha:
                return sha
        raise StoreError(404, f"Invalid rev id: {cut(rev, 120)}", "RevisionNotFound")

    def set_branch(self, branch: str, new: str, old: str | None, user: str = "anonymous") -> None:
        """Compare-and-swap: moves the branch only if it still points at `old` (None: must not exist)."""
        if not BRANCH_RE.fullmatch(branch):
            raise StoreError(400, f"invalid branch name {cut(branch)}")
        lines = [f"update refs/heads/{branch} {new} {old}" if old else f"create refs/heads/{branch} {new}"]
        self._transaction(branch, lines, old, new, user)

    def delete_branch(self, branch: str, user: str = "anonymous") -> None:
        if branch == "main":
            raise StoreError(403, "the main branch cannot be deleted")
        sha = self.resolve(branch)
        self._transaction(branch, [f"delete refs/heads/{branch} {sha}"], sha, None, user)

    def _transaction(self, branch: str, lines: list[str], old: str | None, new: str | None, user: str) -> None:
        """One all-or-nothing `update-ref --stdin`: the branch change and, for a replaced or deleted commit,
        its history ref; then the audit line. A lock file left by a writer that died is removed first."""
        if old:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            lines.append(f"create refs/kb-history/{stamp}/{branch} {old}")
        self._clear_stale_locks(branch)
        r = self._run(("update-ref", "--stdin"), ("\n".join(lines) + "\n").encode(), None, REF_TIMEOUT)
        if r.returncode != 0:
            raise _ref_failure(branch, r.stderr.decode(errors="replace"))
        if self.audit:
            self.audit.record(user, self.repo_id, f"refs/heads/{branch}", old, new)

    def _clear_stale_locks(self, branch: str) -> None:
        for lock in (self.path / "refs" / "heads" / f"{branch}.lock", self.path / "packed-refs.lock"):
            try:
                if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
                    lock.unlink()
            except FileNotFoundError:
                pass

    # ---- trees and blobs ----
    def files(self, commit: str) -> dict[str, tuple[str, str]]:
        """Every file of a commit: path -> (mode, blob oid)."""
        out = self.git("ls-tree", "-r", "-z", "--full-tree", commit)
        result = {}
        for rec in out.split(b"\0"):
            if rec:
                meta, path = rec.split(b"\t", 1)
                mode, _type, oid = meta.decode().split(" ")
                result[path.decode()] = (mode, oid)
        return result

    def list_tree(self, commit: str, sub: str, recursive: bool) -> list[Entry]:
        """Entries under `sub` ('' = root), in the Hub's shape; directories included, recursive or not."""
        target = f"{commit}:{sub}" if sub else commit
        args = ["ls-tree", "-l", "-z", "--full-tree"] + (["-r", "-t"] if recursive else []) + [target]
        out = self.git(*args, check=False)
        if out is None:
            raise StoreError(404, f"{cut(sub)} not found", "EntryNotFound")
        entries = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            _mode, typ, oid, size = meta.decode().split()
            full = f"{sub}/{path.decode()}" if sub else path.decode()
            if typ == "blob":
                entries.append(Entry(full, "file", oid, int(size)))
            elif typ == "tree":
                entries.append(Entry(full, "directory", oid))
        return entries

    def blob_at(self, commit: str, path: str) -> tuple[str, int] | None:
        out = self.git("ls-tree", "-l", "--full-tree", commit, "--", path)
        line = out.decode().strip()
        if not line:
            return None
        _mode, typ, oid, size = line.split("\t", 1)[0].split()
        return (oid, int(size)) if typ == "blob" else None

    def read_blob(self, oid: str) -> bytes:
        return self.git("cat-file", "blob", oid)

    def blob_chunks(self, oid: str):
        """The blob streamed from its loose object, else (packed) read whole through git."""
        return loose_blob_chunks(self.path / "objects", oid) or iter([self.read_blob(oid)])

    def new_blob(self) -> BlobSpool:
        return BlobSpool(self.path / "objects")

    def write_blob(self, data: bytes) -> str:
        spool = self.new_blob()
        try:
            spool.write(data)
            return spool.finish()[0]
        except NoSpace as e:
            raise StoreError(507, str(e.strerror), "InsufficientStorage") from None

    def make_commit(self, parent: str | None, files: dict[str, tuple[str, str]], message: str, author: str) -> str:
        """Writes a tree holding exactly `files` (via a throwaway index) and a commit on top of `parent`."""
        if files:
            with tempfile.TemporaryDirectory(prefix="kb-index-", dir=self.path) as tmp:
                env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
                info = "".join(f"{mode} {oid}\t{path}\n" for path, (mode, oid) in sorted(files.items()))
                self.git("update-index", "--add", "--index-info", input=info.encode(), env=env)
                tree = self.git("write-tree", env=env).decode().strip()
        else:
            tree = self.git("mktree", input=b"").decode().strip()
        ident = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@kernel-builder.local",
                 "GIT_COMMITTER_NAME": "kernel-builder serve", "GIT_COMMITTER_EMAIL": "serve@kernel-builder.local"}
        args = ["commit-tree", tree] + (["-p", parent] if parent else [])
        return self.git(*args, input=message.encode(), env=ident).decode().strip()


class Store:
    """ROOT/<org>/<name>.git, created on demand by `create`; ROOT/audit.log records every ref change."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(self.root / "audit.log")
        self._repos: dict[str, Repo] = {}
        self._guard = threading.Lock()

    def _path(self, org: object, name: object) -> Path:
        if not (isinstance(org, str) and isinstance(name, str) and NAME_RE.fullmatch(org)
                and NAME_RE.fullmatch(name)) or ".." in org or ".." in name:
            raise StoreError(400, f"invalid repo id {cut(org, 100)}/{cut(name, 100)}")
        return self.root / org / f"{name}.git"

    def get(self, org: str, name: str) -> Repo:
        path = self._path(org, name)
        with self._guard:
            if not (path / "HEAD").is_file():
                raise StoreError(404, f"Repository {org}/{name} not found", "RepoNotFound")
            return self._repos.setdefault(str(path), Repo(path, f"{org}/{name}", self.audit))

    def exists(self, org: str, name: str) -> bool:
        return (self._path(org, name) / "HEAD").is_file()

    def create(self, org: str, name: str, private: bool, author: str) -> Repo:
        path = self._path(org, name)
        with self._guard:
            if (path / "HEAD").is_file():
                raise StoreError(409, f"You already created this kernel repo: {org}/{name}", "RepoExists")
            tmp = None
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
                _init_repo(Repo(tmp, f"{org}/{name}", self.audit), private, author)
                tmp.rename(path)  # atomic: a repo is either absent or complete
            except OSError as e:
                raise _os_failure("create the repository", e) from None
            finally:
                if tmp is not None and tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            repo = self._repos[str(path)] = Repo(path, f"{org}/{name}", self.audit)
            return repo


def _init_repo(repo: Repo, private: bool, author: str) -> None:
    repo.git("init", "-q", "--bare", str(repo.path))
    repo.git("symbolic-ref", "HEAD", "refs/heads/main")
    (repo.path / "hub.json").write_text(json.dumps({"private": bool(private)}))
    first = repo.make_commit(None, {}, "initial commit", author)
    repo.set_branch("main", first, None, author)


def _os_failure(what: str, e: OSError) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(507, f"cannot {what}: no space left on the hub's disk", "InsufficientStorage")
    return StoreError(500, f"cannot {what}: {e.strerror or e}")
