"""One `POST …/commit/<rev>`: the streamed body's operations applied to a branch as one new commit.

Why in two phases: every blob is written while the body is read (unreferenced objects, invisible), and only
then, under the repo's lock, is the tree built and the branch moved by one compare-and-swap. A body that is
refused half-way, or a client that goes away, changes no branch.
"""

from __future__ import annotations

import binascii

from .commit_body import BlobRef, read_items
from .objects import NoSpace
from .store import Repo, StoreError, check_path, cut

MAX_OPS = 200_000  # operations in one commit: beyond this the tree alone is a memory problem


def _file_oid(repo: Repo, path: str, value: dict) -> str:
    if value.get("encoding", "base64") != "base64":
        raise StoreError(400, f"{cut(path)}: file content must be base64")
    content = value.get("content")
    if isinstance(content, BlobRef):
        return content.oid
    if not isinstance(content, str):
        raise StoreError(400, f"{cut(path)}: file content must be a base64 string")
    try:
        data = binascii.a2b_base64(content.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise StoreError(400, f"{cut(path)}: invalid base64 content") from None
    return repo.write_blob(data)


def _op(repo: Repo, n: int, key, value) -> tuple[str, str, str | None]:
    if not isinstance(value, dict):
        raise StoreError(400, f"commit payload line {n}: value must be an object")
    raw = value.get("path")
    if key == "deletedFolder" and isinstance(raw, str):
        raw = raw.rstrip("/")
    path = check_path(raw)
    if key == "file":
        return "file", path, _file_oid(repo, path, value)
    if key in ("deletedFile", "deletedFolder"):
        return key, path, None
    if key == "lfsFile":
        raise StoreError(400, f"{cut(path)}: LFS uploads are not supported; this hub takes regular files")
    raise StoreError(400, f"commit payload line {n}: unknown key {cut(key, 60)}")


def read_ops(repo: Repo, stream) -> tuple[dict, list[tuple[str, str, str | None]]]:
    """The header and the operations of an NDJSON body, every file's blob already written."""
    header, ops = None, []
    try:
        for n, item in read_items(stream, repo.new_blob):
            if not isinstance(item, dict) or "key" not in item or "value" not in item:
                raise StoreError(400, f"commit payload line {n}: not a JSON object with key and value")
            if item["key"] == "header":
                if not isinstance(item["value"], dict):
                    raise StoreError(400, f"commit payload line {n}: the header must be an object")
                header = item["value"]
                continue
            if header is None:
                raise StoreError(400, "commit payload must start with a header line")
            if len(ops) >= MAX_OPS:
                raise StoreError(413, f"more than {MAX_OPS} operations in one commit")
            ops.append(_op(repo, n, item["key"], item["value"]))
    except NoSpace as e:
        raise StoreError(507, f"commit refused: {e.strerror}", "InsufficientStorage") from None
    if header is None:
        raise StoreError(400, "empty commit payload")
    return header, ops


def _parents(path: str) -> set[str]:
    return {path.rsplit("/", i + 1)[0] for i in range(path.count("/"))}


def _new_files(files: dict, ops: list) -> dict:
    folders = set().union(*map(_parents, files)) if files else set()
    for kind, path, oid in ops:
        if kind == "file":
            if path in folders:  # a file replaces a folder: its files go
                files = {k: v for k, v in files.items() if not k.startswith(path + "/")}
                folders = set().union(*map(_parents, files)) if files else set()
            files[path] = ("100644", oid)
            folders |= _parents(path)
        elif kind == "deletedFile":
            if files.pop(path, None) is None:
                raise StoreError(404, f"A file with this name doesn't exist: {cut(path)}", "EntryNotFound")
        else:
            gone = [k for k in files if k.startswith(path + "/")]
            if not gone:
                raise StoreError(404, f"A folder with this name doesn't exist: {cut(path)}", "EntryNotFound")
            for k in gone:
                del files[k]
    folders = set().union(*map(_parents, files)) if files else set()
    clash = sorted(folders & set(files))
    if clash:  # a file cannot also be a folder
        raise StoreError(400, f"{cut(clash[0])}: a file in this commit is also a parent folder")
    return files


def apply_commit(repo: Repo, branch: str, stream, user: str) -> str:
    header, ops = read_ops(repo, stream)
    message = str(header.get("summary") or "update")
    if header.get("description"):
        message += "\n\n" + str(header["description"])
    parent = header.get("parentCommit")
    if parent is not None and not isinstance(parent, str):
        raise StoreError(400, f"parentCommit must be a commit sha, not {cut(parent, 60)}")
    with repo.lock:  # one commit per repo at a time; update-ref's CAS guards against other processes too
        old = repo.resolve(branch)
        if parent and parent != old:
            raise StoreError(412, f"parentCommit {cut(parent, 60)} is not the head of {branch} ({old})", "Conflict")
        files = _new_files(repo.files(old), ops)
        new = repo.make_commit(old, files, message[:100_000], user)
        repo.set_branch(branch, new, old, user)
    return new
