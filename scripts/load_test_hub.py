#!/usr/bin/env python3
"""Bounded loopback load and fault test of `kernel-builder serve` (the real CLI server, in its own process).

Builds a small noarch kernel (two variants) with the CLI, uploads it with kernel_builder's upload(), then:
  1. load under faults, all at once: N downloads of build/<variant>/* the way get_kernel fetches them (each in a
     fresh cache, compared byte for byte) and M one-file commits, while IDLE connections sit open sending
     nothing, SLOW clients drip a request header a byte at a time, and OVERSIZED clients announce bodies above
     --max-body-size;
  2. bad inputs: malformed requests of every kind, each must get a 4xx (never a 500, never a hang);
  3. kill -9: KILLS rounds of concurrent commits with the server killed mid-way and restarted on the same root;
     every commit that was acknowledged must be on the branch afterwards, and git fsck must pass.
Prints: load held, faults survived, bad inputs tried, commits acknowledged vs present; exits 1 on any error.

    python scripts/load_test_hub.py [-n 32] [-m 8] [--idle 300] [--slow 20] [--oversized 10] [--kills 8]
                                    [--nofile 256] [--timeout 300]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks huggingface_hub 2.4 calls (CONTRACT §7)
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
for _var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "builder"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from huggingface_hub import HfApi  # noqa: E402

from kernel_builder.hub.upload import upload  # noqa: E402
from load_faults import bad_inputs, hold_idle, oversized, slow_clients  # noqa: E402

TOKEN = "load-test-token"
REPO_ID = "acme/load-relu"
VARIANT = "torch-cpu"
MAX_BODY = 1 << 20


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


class Server:
    """`kernel-builder serve` in a child process with a descriptor limit; kill -9 and restart on the same port."""

    def __init__(self, root: Path, tokens: Path, nofile: int, port: int = 0):
        self.root, self.tokens, self.nofile, self.port = root, tokens, nofile, port
        self.start()

    def start(self) -> None:
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel_builder", "serve", str(self.root), "--port", str(self.port),
             "--token-file", str(self.tokens), "--trusted-org", "acme", "--header-timeout", "3",
             "--max-body-size", str(MAX_BODY)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, preexec_fn=limit)
        line = self.proc.stdout.readline()
        self.url = line.split(" at ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # never block on a full pipe

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self.root / "acme" / "load-relu.git"), *args],
                              capture_output=True, text=True).stdout


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(1, min(len(s), int(-(-q * len(s) // 100)))) - 1]


def main() -> int:
    import logging

    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # the kill rounds' retries are expected
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--downloads", type=int, default=32, help="parallel downloads (default 32)")
    ap.add_argument("-m", "--uploads", type=int, default=8, help="concurrent one-file commits (default 8)")
    ap.add_argument("--idle", type=int, default=300, help="idle connections held open during the load")
    ap.add_argument("--slow", type=int, default=20, help="clients sending their header a byte at a time")
    ap.add_argument("--oversized", type=int, default=10, help="clients announcing a body over the limit")
    ap.add_argument("--kills", type=int, default=8, help="kill -9 rounds")
    ap.add_argument("--nofile", type=int, default=256, help="the server's descriptor limit (ulimit -n)")
    ap.add_argument("--timeout", type=float, default=300, help="bound on the load phase, seconds")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.idle + 512)), hard))
    with tempfile.TemporaryDirectory(prefix="kb-load-") as tmpd:
        tmp = Path(tmpd)
        build = build_noarch(tmp)
        (tmp / "tokens").write_text(f"{TOKEN} loader acme\n")
        srv = Server(tmp / "hub", tmp / "tokens", a.nofile)
        try:
            return run(a, tmp, build, srv)
        finally:
            srv.stop()


def run(a, tmp: Path, build: Path, srv: Server) -> int:
    upload(build, repo_id=REPO_ID, endpoint=srv.url, token=TOKEN, allow_dirty=True)
    errors: list[str] = []
    local = {"build/" + p.relative_to(build).as_posix(): p.read_bytes() for p in (build / VARIANT).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    lat, faults = load_phase(a, tmp, srv, local, errors)
    tried, refused = bad_inputs(srv.url, TOKEN, errors)
    acked, present = kill_rounds(a, srv, errors)
    fsck = subprocess.run(["git", "--git-dir", str(srv.root / "acme" / "load-relu.git"), "fsck"],
                          capture_output=True, text=True)
    if fsck.returncode != 0:
        errors.append(f"git fsck: {fsck.stderr.strip()[:300]}")
    for kind, want in (("download", a.downloads), ("upload", a.uploads)):
        v = lat[kind]
        stats = f"p50 {pct(v, 50) * 1000:.0f} ms, p99 {pct(v, 99) * 1000:.0f} ms" if v else "no successes"
        print(f"load held: {kind}s ok {len(v)}/{want} ({stats}) at ulimit -n {a.nofile}")
    print(f"faults survived: {faults['idle']} idle connections ({faults['idle_closed']} closed by the server), "
          f"{faults['slow']} slow headers ({faults['slow_408']} got 408, {faults['slow_closed']} closed at the "
          f"connection limit), {faults['oversized']} oversized bodies "
          f"({faults['oversized_413']} got 413), {a.kills} kill -9 rounds")
    print(f"bad inputs tried: {tried} ({refused} refused with a 4xx, 0 expected 500s)")
    print(f"commits acknowledged vs present: {acked} acknowledged, {present} present after {a.kills} kill -9 "
          f"rounds; git fsck {'ok' if fsck.returncode == 0 else 'FAILED'}")
    print(f"errors: {len(errors)}")
    for e in errors:
        print(f"  {e}")
    return 1 if errors else 0


def load_phase(a, tmp: Path, srv: Server, local: dict, errors: list) -> tuple[dict, dict]:
    lat: dict[str, list[float]] = {"download": [], "upload": []}
    guard = threading.Lock()
    stop = threading.Event()
    faults: dict[str, int] = {}
    idle = hold_idle(srv.url, a.idle, faults)
    background = [threading.Thread(target=slow_clients, args=(srv.url, a.slow, faults, stop)),
                  threading.Thread(target=oversized, args=(srv.url, a.oversized, MAX_BODY, faults))]
    for t in background:
        t.start()

    def download(i: int) -> None:
        t = time.perf_counter()
        d = Path(HfApi(endpoint=srv.url).snapshot_download(
            REPO_ID, repo_type="kernel", revision="v1", allow_patterns=f"build/{VARIANT}/*",
            cache_dir=tmp / "caches" / f"c{i}"))
        got = {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}
        if got != local:
            raise AssertionError(f"download {i}: files differ from the build")
        with guard:
            lat["download"].append(time.perf_counter() - t)

    def upload_one(i: int) -> None:
        t = time.perf_counter()
        HfApi(endpoint=srv.url, token=TOKEN).upload_file(
            path_or_fileobj=f"upload {i}\n".encode(), path_in_repo=f"load/file-{i}.txt", repo_id=REPO_ID,
            repo_type="kernel", revision="v1", commit_message=f"load test upload {i}")
        with guard:
            lat["upload"].append(time.perf_counter() - t)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(download, i) for i in range(a.downloads)]
        futures += [pool.submit(upload_one, i) for i in range(a.uploads)]
        done, pending = wait(futures, timeout=a.timeout)
        errors += [f"{len(pending)} operation(s) still running after {a.timeout:.0f}s"] if pending else []
        errors += [f"{type(f.exception()).__name__}: {f.exception()}"[:300] for f in done if f.exception()]
    stop.set()
    for t in background:
        t.join(timeout=60)
    faults["idle_closed"] = sum(1 for s in idle if _closed(s))
    for s in idle:
        s.close()
    return lat, faults


def _closed(s: socket.socket) -> bool:
    s.settimeout(0.01)
    try:
        return s.recv(1) == b""
    except OSError:
        return False


def kill_rounds(a, srv: Server, errors: list) -> tuple[int, int]:
    """Commits from 4 threads while the server is killed with SIGKILL and restarted, KILLS times."""
    acked: list[str] = []
    guard = threading.Lock()
    rng = random.Random(13)
    for r in range(a.kills):
        stop = threading.Event()

        def writer(w: int) -> None:
            n = 0
            while not stop.is_set():
                path = f"kill/r{r}-w{w}-{n}.txt"
                n += 1
                try:
                    HfApi(endpoint=srv.url, token=TOKEN).upload_file(
                        path_or_fileobj=path.encode(), path_in_repo=path, repo_id=REPO_ID, repo_type="kernel",
                        revision="v1", commit_message=path)
                except Exception:  # noqa: BLE001 - a commit cut by the kill is not acknowledged; that is all
                    continue
                with guard:
                    acked.append(path)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=120)
        srv.start()
    files = set(srv.git("ls-tree", "-r", "--name-only", "refs/heads/v1").split())
    missing = [p for p in acked if p not in files]
    if missing:
        errors.append(f"{len(missing)} acknowledged commit(s) missing after kill -9: {missing[:5]}")
    return len(acked), len(acked) - len(missing)


if __name__ == "__main__":
    sys.exit(main())
