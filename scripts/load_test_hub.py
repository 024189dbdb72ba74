#!/usr/bin/env python3
"""Bounded loopback load test of `kernel-builder serve`.

Starts serve() on 127.0.0.1 over a temporary root, builds and uploads a small noarch kernel (two variants) with
kernel_builder's upload(), then runs at the same time:
  * N downloads of build/<variant>/* the way get_kernel fetches them (huggingface_hub snapshot_download of the
    version branch, each into its own fresh cache), every file compared byte for byte with the local build;
  * M uploads to the same repo and branch, each a distinct file in its own commit.
Prints counts, errors, p50/p99 latency per kind and the branch's final git commit count; exits 1 on any
error (a failed or wrong download, a lost upload, a commit count that does not add up).

    python scripts/load_test_hub.py [-n 32] [-m 8] [--timeout 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks huggingface_hub 2.4 calls (CONTRACT §7)
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
for _var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "builder"))

from huggingface_hub import HfApi  # noqa: E402

from kernel_builder.hub.serve import serve  # noqa: E402
from kernel_builder.hub.upload import upload  # noqa: E402

TOKEN = "load-test-token"
REPO_ID = "acme/load-relu"
VARIANT = "torch-cpu"


def build_noarch(tmp: Path) -> Path:
    """A pure-Python kernel with the cpu and cann noarch variants, built by the real CLI; returns its build/."""
    proj = tmp / "proj"
    pkg = proj / "torch-ext" / "load_relu"
    pkg.mkdir(parents=True)
    (proj / "build.toml").write_text('[general]\nname = "load-relu"\nversion = 1\nedition = 5\nlicense = "MIT"\n'
                                     'backends = ["cpu", "cann"]\n\n[torch-noarch]\n')
    (pkg / "__init__.py").write_text(
        "import torch\nfrom ._ops import add_op_namespace_prefix\n\n"
        "def relu(x: torch.Tensor) -> torch.Tensor:\n    return x.clamp_min(0)\n\n__all__ = ['relu']\n")
    (pkg / "weights.py").write_text("# padding so a download is more than a few bytes\n"
                                    + "".join(f"W{i} = {i * 7919}\n" for i in range(4000)))
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(tmp / "kb-cache"))
    r = subprocess.run([sys.executable, "-m", "kernel_builder", "build", str(proj), "--out", str(proj / "build")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if r.returncode != 0:
        sys.exit(f"build failed:\n{r.stdout}\n{r.stderr}")
    return proj / "build"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(1, min(len(s), int(-(-q * len(s) // 100))))
    return s[k - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--downloads", type=int, default=32, help="parallel downloads (default 32)")
    ap.add_argument("-m", "--uploads", type=int, default=8, help="concurrent uploads, one file each (default 8)")
    ap.add_argument("--timeout", type=float, default=300, help="bound on the concurrent phase, seconds")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kb-load-") as tmpd:
        tmp = Path(tmpd)
        build = build_noarch(tmp)
        (tmp / "tokens").write_text(f"{TOKEN} loader\n")
        srv = serve(tmp / "hub", token_file=tmp / "tokens", trusted_orgs=["acme"])
        try:
            return run(a, tmp, build, srv)
        finally:
            srv.shutdown()


def run(a, tmp: Path, build: Path, srv) -> int:
    t0 = time.perf_counter()
    upload(build, repo_id=REPO_ID, endpoint=srv.url, token=TOKEN, allow_dirty=True)
    print(f"server {srv.url}; initial upload of {build} in {time.perf_counter() - t0:.2f}s")
    api = HfApi(endpoint=srv.url, token=TOKEN)
    repo_git = srv.app.store.get(*REPO_ID.split("/")).git
    commits_before = int(repo_git("rev-list", "--count", "refs/heads/v1").decode())
    local = {"build/" + p.relative_to(build).as_posix(): p.read_bytes() for p in (build / VARIANT).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}

    lat: dict[str, list[float]] = {"download": [], "upload": []}
    errors: list[str] = []
    guard = threading.Lock()
    start = threading.Barrier(a.downloads + a.uploads)

    def download(i: int) -> None:
        start.wait()
        t = time.perf_counter()
        try:
            # fresh client and cache per download, like a fresh process calling get_kernel
            d = Path(HfApi(endpoint=srv.url).snapshot_download(
                REPO_ID, repo_type="kernel", revision="v1", allow_patterns=f"build/{VARIANT}/*",
                cache_dir=tmp / "caches" / f"c{i}"))
            got = {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}
            if got != local:
                raise AssertionError(f"downloaded files differ: missing {sorted(set(local) - set(got))}, "
                                     f"extra {sorted(set(got) - set(local))}, "
                                     f"changed {sorted(k for k in local if k in got and got[k] != local[k])}")
            with guard:
                lat["download"].append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            with guard:
                errors.append(f"download {i}: {type(e).__name__}: {e}")

    def upload_one(i: int) -> None:
        start.wait()
        t = time.perf_counter()
        try:
            HfApi(endpoint=srv.url, token=TOKEN).upload_file(
                path_or_fileobj=f"upload {i}\n".encode(), path_in_repo=f"load/file-{i}.txt", repo_id=REPO_ID,
                repo_type="kernel", revision="v1", commit_message=f"load test upload {i}")
            with guard:
                lat["upload"].append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001
            with guard:
                errors.append(f"upload {i}: {type(e).__name__}: {e}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.downloads + a.uploads) as pool:
        futures = [pool.submit(download, i) for i in range(a.downloads)]
        futures += [pool.submit(upload_one, i) for i in range(a.uploads)]
        done, pending = wait(futures, timeout=a.timeout)
        if pending:
            errors.append(f"{len(pending)} operation(s) still running after {a.timeout:.0f}s")
            start.abort()
        for f in done:
            if f.exception():
                errors.append("".join(traceback.format_exception(f.exception())).strip())
    wall = time.perf_counter() - t0

    # every upload landed exactly once, as its own commit, and nothing else moved the branch
    listing = set(api.list_repo_files(REPO_ID, repo_type="kernel", revision="v1"))
    missing = [i for i in range(a.uploads) if f"load/file-{i}.txt" not in listing]
    if missing:
        errors.append(f"uploads missing from v1: {missing}")
    commits = int(repo_git("rev-list", "--count", "refs/heads/v1").decode())
    if commits != commits_before + len(lat["upload"]):
        errors.append(f"v1 has {commits} commits, expected {commits_before} + {len(lat['upload'])}")
    all_commits = int(repo_git("rev-list", "--count", "--all").decode())

    print(f"concurrent phase: {a.downloads} downloads + {a.uploads} uploads in {wall:.2f}s")
    for kind, want in (("download", a.downloads), ("upload", a.uploads)):
        v = lat[kind]
        stats = f"p50 {pct(v, 50) * 1000:.0f} ms, p99 {pct(v, 99) * 1000:.0f} ms, max {max(v) * 1000:.0f} ms" if v \
            else "no successes"
        print(f"  {kind:8s} ok {len(v)}/{want}  {stats}")
    print(f"  files per download: {len(local)} ({sum(map(len, local.values()))} bytes)")
    print(f"git commits: v1 {commits} (before the concurrent phase {commits_before}), all branches {all_commits}")
    print(f"errors: {len(errors)}")
    for e in errors:
        print(f"  {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
