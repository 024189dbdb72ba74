"""Blobs written straight into a bare repository's object directory, without a `git hash-object` per file.

Why not `git hash-object -w --stdin`: one process per file (2,000 files, 2,000 forks) and the whole file in
that process's memory. A loose object is only `zlib(b"blob <size>\\0" + data)` at objects/xx/yyyy…, so we
write it ourselves, from memory for small files and from a spool file for large ones.

Why these compression levels: level 1 is git's own default for loose objects (core.looseCompression) and costs
little on small files; above LARGE_BLOB (64 KiB) it would cap a commit at ~90 MB/s on one core (measured on a shared
2-core host: level 1 ~95 MB/s, level 0 ~860 MB/s on a torch .so), so large blobs are stored (level 0) and
`git gc` on the repository later packs and compresses them at git's pack level. Objects are content-addressed
and immutable: a file that already exists is the same object and is not rewritten.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import zlib
from pathlib import Path

MEMORY_LIMIT = 8 << 20  # bytes of one file kept in memory before it is spooled to disk
LARGE_BLOB = 64 << 10
READ = 1 << 20


class NoSpace(OSError):
    """The hub's disk is full; the request fails with 507, nothing becomes visible."""


def _guard(e: OSError):
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(e.errno, "no space left on the hub's disk")
    return e


class BlobSpool:
    """One file's bytes as they are decoded; `finish()` stores them as a blob and returns (oid, size)."""

    def __init__(self, objects: Path):
        self.objects = Path(objects)
        self.mem = bytearray()
        self.file = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        try:
            if self.file is None and len(self.mem) + len(data) <= MEMORY_LIMIT:
                self.mem += data
                return
            if self.file is None:  # unnamed (O_TMPFILE where possible): gone even after kill -9
                self.file = tempfile.TemporaryFile(dir=self.objects, prefix="kb-spool-")
                self.file.write(self.mem)
                self.mem = bytearray()
            self.file.write(data)
        except OSError as e:
            self.close()
            raise _guard(e) from None

    def _chunks(self):
        if self.file is None:
            yield bytes(self.mem)
            return
        self.file.flush()
        self.file.seek(0)
        while chunk := self.file.read(READ):
            yield chunk

    def finish(self) -> tuple[str, int]:
        """Hashes and compresses in one read of the spool, into git's temporary name, then renames."""
        try:
            sha = hashlib.sha1(b"blob %d\0" % self.size)
            fd, tmp = tempfile.mkstemp(dir=self.objects, prefix="tmp_obj_")  # git's name: `git prune` knows it
            try:
                z = zlib.compressobj(0 if self.size > LARGE_BLOB else 1)
                with os.fdopen(fd, "wb") as out:
                    out.write(z.compress(b"blob %d\0" % self.size))
                    for chunk in self._chunks():
                        sha.update(chunk)
                        out.write(z.compress(chunk))
                    out.write(z.flush())
                oid = sha.hexdigest()
                final = self.objects / oid[:2] / oid[2:]
                if not final.exists():
                    final.parent.mkdir(exist_ok=True)
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, final)  # same content under the same name: replacing a twin is harmless
            finally:
                Path(tmp).unlink(missing_ok=True)
            return oid, self.size
        except OSError as e:
            raise _guard(e) from None
        finally:
            self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.mem = bytearray()


def loose_blob_chunks(objects: Path, oid: str):
    """The content of a loose blob, decompressed piece by piece (a download never holds a whole file), or None
    when the object is not loose (packed by `git gc`: the caller asks git)."""
    path = Path(objects) / oid[:2] / oid[2:]
    try:
        f = open(path, "rb")
    except OSError:
        return None

    def chunks():
        with f:
            z, head = zlib.decompressobj(), b""
            while block := f.read(READ):
                out = z.decompress(block)
                if head is not None:  # strip "blob <size>\0", which may straddle two pieces
                    head += out
                    if b"\0" not in head:
                        continue
                    out, head = head.split(b"\0", 1)[1], None
                if out:
                    yield out
            tail = z.flush()
            if tail:
                yield tail

    return chunks()
