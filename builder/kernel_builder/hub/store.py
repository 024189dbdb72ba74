"""Storage for `kernel-builder serve`: one bare git repository per kernel repo, driven by git plumbing.

Why git: the Hub's model is git (branches, commit shas, blob oids that huggingface_hub compares to skip
unchanged files), so keeping real git objects gives real history and the exact oids clients expect.
Why plumbing: a commit is built entirely out of band (blobs with `hash-object -w`, a tree from a throwaway
index, `commit-tree`) and only becomes visible through one compare-and-swap `update-ref`. A client that
disconnects mid-upload leaves unreferenced objects at worst, never a half-written branch.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem
from ..tools import run

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class StoreError(Exception):
    """A request the store refuses; `status` and `code` become the HTTP status and X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def check_path(path: object) -> str:
    """A file path inside a repo: relative, POSIX, no `..`/`.`/empty parts, no backslash or NUL, no `.git`."""
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise StoreError(400, f"invalid path {path!r}")
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or "\0" in path or any(p in ("", ".", "..", ".git") for p in parts)
            or any(ord(c) < 32 for c in path)):
        raise StoreError(400, f"invalid path {path!r}: must be relative, without '..', backslashes or NUL")
    return path


@dataclass
class Entry:
    path: str
    type: str  # "file" | "directory"
    oid: str
    size: int = 0


class Repo:
    """One bare repository. Reads are lock-free (git objects are immutable); writes hold `lock`."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None, check: bool = True) -> bytes:
        e = dict(os.environ, GIT_DIR=str(self.path), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
        e.update(env or {})
        try:
            r = run(["git", *args], f"git {args[0]}", input=input, env=e, text=False)
        except EnvironmentProblem as problem:  # no git, or a hung one: the request fails, the server lives
            raise StoreError(500, str(problem)) from None
        if check and r.returncode != 0:
            raise StoreError(500, f"git {args[0]} failed: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout if check else (r.stdout if r.returncode == 0 else None)

    # ---- metadata ----
    @property
    def meta(self) -> dict:
        f = self.path / "hub.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    @property
    def private(self) -> bool:
        return bool(self.meta.get("private"))

    # ---- refs ----
    def branches(self) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads/")
        return dict(line.split(" ", 1) for line in out.decode().splitlines() if line)

    def resolve(self, rev: str) -> str:
        """A branch name (optionally `refs/heads/…`) or a full commit sha -> commit sha; 404 otherwise."""
        name = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
        if SHA_RE.match(name):
            if self.git("cat-file", "-e", f"{name}^{{commit}}", check=False) is not None:
                return name
        elif BRANCH_RE.match(name):
            sha = self.branches().get(name)
            if sha:
                return sha
        raise StoreError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def set_branch(self, branch: str, new: str, old: str | None) -> None:
        """Compare-and-swap: moves the branch only if it still points at `old` (None: must not exist)."""
        if not BRANCH_RE.match(branch):
            raise StoreError(400, f"invalid branch name {branch!r}")
        r = self.git("update-ref", f"refs/heads/{branch}", new, old or "", check=False)
        if r is None:
            raise StoreError(409, f"branch {branch} moved concurrently; retry", "Conflict")

    def delete_branch(self, branch: str) -> None:
        sha = self.resolve(branch)
        if branch == "main":
            raise StoreError(403, "the main branch cannot be deleted")
        self.git("update-ref", "-d", f"refs/heads/{branch}", sha)

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
            raise StoreError(404, f"{sub} not found", "EntryNotFound")
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

    def write_blob(self, data: bytes) -> str:
        return self.git("hash-object", "-w", "--stdin", input=data).decode().strip()

    def make_commit(self, parent: str | None, files: dict[str, tuple[str, str]], message: str, author: str) -> str:
        """Writes a tree holding exactly `files` (via a throwaway index) and a commit on top of `parent`."""
        if files:
            with tempfile.TemporaryDirectory(prefix="kb-index-") as tmp:
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
    """ROOT/<org>/<name>.git, created on demand by `create`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._repos: dict[str, Repo] = {}
        self._guard = threading.Lock()

    def _path(self, org: str, name: str) -> Path:
        if not (NAME_RE.match(org) and NAME_RE.match(name)) or ".." in org or ".." in name:
            raise StoreError(400, f"invalid repo id {org}/{name}")
        return self.root / org / f"{name}.git"

    def get(self, org: str, name: str) -> Repo:
        path = self._path(org, name)
        with self._guard:
            if not (path / "HEAD").is_file():
                raise StoreError(404, f"Repository {org}/{name} not found", "RepoNotFound")
            return self._repos.setdefault(str(path), Repo(path))

    def create(self, org: str, name: str, private: bool, author: str) -> Repo:
        path = self._path(org, name)
        with self._guard:
            if (path / "HEAD").is_file():
                raise StoreError(409, f"You already created this kernel repo: {org}/{name}", "RepoExists")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
            repo = Repo(tmp)
            repo.git("init", "-q", "--bare", str(tmp))
            repo.git("symbolic-ref", "HEAD", "refs/heads/main")
            (tmp / "hub.json").write_text(json.dumps({"private": bool(private)}))
            first = repo.make_commit(None, {}, "initial commit", author)
            repo.set_branch("main", first, None)
            tmp.rename(path)  # atomic: a repo is either absent or complete
            repo = self._repos[str(path)] = Repo(path)
            return repo
