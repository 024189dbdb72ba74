#!/usr/bin/env python3
"""Proof that an interrupted `kernel-builder upload` never publishes a half-replaced variant.

Two generations (A, B) of one pure-Python kernel are built by the real CLI and padded with FILES random files
of SIZE_MB in all (different bytes per generation), each generation's `__init__` exporting GEN = "A" / "B".
A is uploaded to a `serve` on 127.0.0.1; then ROUNDS times an upload of the other generation is started as a
CLI process and sent SIGINT at a random moment of its measured duration. After each round the branch's tree
(read from the server's bare git repo) must be exactly A's or exactly B's, and the real `kernels` loader
(`get_kernel` in a fresh interpreter and cache) must load the generation the tree is.

    python scripts/atomic_upload_check.py                          # 2,000 files, 1 GB, 20 rounds (minutes)
    python scripts/atomic_upload_check.py --files 60 --size-mb 6 --rounds 3     # what CI runs
    python scripts/atomic_upload_check.py --redigest BUILD_DIR      # rewrite metadata digests after editing

Prints rounds, old kept / new landed / mixed, loads that matched; exits 1 on any mixed tree or wrong load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "builder"))
for _var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.pop(_var, None)

TOKEN = "atomic-check-token"
REPO_ID = "acme/atomic-relu"


def redigest(build: Path) -> None:
    from kernel_builder.build.layout import digest_dir

    for meta_file in Path(build).glob("*/metadata.json"):
        meta = json.loads(meta_file.read_text())
        meta["digest"] = digest_dir(meta_file.parent)
        meta_file.write_text(json.dumps(meta, indent=2) + "\n")


def build_generation(tmp: Path, gen: str, files: int, size: int, seed: int) -> Path:
    """The kernel built by the CLI (torch-cpu and torch-npu noarch variants), padded; returns its build/."""
    proj = tmp / f"proj-{gen}"
    pkg = proj / "torch-ext" / "atomic_relu"
    pkg.mkdir(parents=True)
    (proj / "build.toml").write_text('[general]\nname = "atomic-relu"\nversion = 1\nedition = 5\nlicense = "MIT"\n'
                                     'backends = ["cpu", "cann"]\n\n[torch-noarch]\n')
    (pkg / "__init__.py").write_text(f"import torch\nfrom ._ops import add_op_namespace_prefix\n\nGEN = {gen!r}\n\n"
                                     "def relu(x: torch.Tensor) -> torch.Tensor:\n    return x.clamp_min(0)\n\n"
                                     "__all__ = ['relu', 'GEN']\n")
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(tmp / "kb-cache"))
    r = subprocess.run([sys.executable, "-m", "kernel_builder", "build", str(proj), "--out", str(proj / "build")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if r.returncode != 0:
        sys.exit(f"build failed:\n{r.stdout}\n{r.stderr}")
    rng = random.Random(f"{seed}-{gen}")
    variant = proj / "build" / "torch-cpu"
    per = max(1, size // max(1, files))
    for i in range(files):  # the padding goes to one variant: its folder is what a half upload would mix
        (variant / f"pad_{i:05d}.bin").write_bytes(rng.randbytes(per))
    redigest(proj / "build")
    return proj / "build"


def blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def local_tree(build: Path) -> dict[str, str]:
    return {f"build/{p.relative_to(build).as_posix()}": blob_oid(p.read_bytes())
            for p in build.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def hub_tree(srv) -> dict[str, str]:
    files = srv.app.store.get(*REPO_ID.split("/")).files("refs/heads/v1")
    return {path: oid for path, (_mode, oid) in files.items() if path.startswith("build/")}


def upload_cmd(build: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "kernel_builder", "upload", str(build), "--repo-id", REPO_ID, "--endpoint", url,
            "--allow-dirty"]


def child_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_TOKEN=TOKEN, HF_HOME=str(tmp / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    return env


def loaded_generation(url: str, cache: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=url, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home-load"))
    code = f"import kernels\nk = kernels.get_kernel({REPO_ID!r}, version=1)\nprint('GEN', k.GEN)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("GEN ")]
    return lines[-1].split()[1] if r.returncode == 0 and lines else f"load failed: {r.stderr.strip()[-300:]}"


def one_round(n: int, a, tmp: Path, srv, builds: dict, trees: dict, current: str, full_s: float) -> tuple[str, str]:
    target = "B" if current == "A" else "A"
    delay = random.Random(f"{a.seed}-round-{n}").uniform(0, full_s)
    proc = subprocess.Popen(upload_cmd(builds[target], srv.url), env=child_env(tmp), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=600)
    deadline = time.monotonic() + 120  # a body sent in full before SIGINT is still committed: let it finish
    calm_since = None  # quiet for half a second: a connection still in the accept backlog has shown up by then
    while time.monotonic() < deadline:
        calm_since = (calm_since or time.monotonic()) if srv.quiescent() else None
        if calm_since and time.monotonic() - calm_since > 0.5:
            break
        time.sleep(0.05)
    tree = hub_tree(srv)
    state = next((g for g, t in trees.items() if t == tree), "mixed")
    got = loaded_generation(srv.url, tmp / "caches" / f"round-{n}") if state != "mixed" else "-"
    print(f"round {n:2d}: SIGINT after {delay:5.2f}s of ~{full_s:.1f}s; exit {proc.returncode}; branch = "
          f"{'old' if state == current else 'new' if state == target else 'MIXED'} ({state}); get_kernel "
          f"loaded {got}" + (f"; stderr: {err.strip().splitlines()[-1][:160]}" if err.strip() else ""), flush=True)
    return state, got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--size-mb", type=float, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--redigest", type=Path, help="only rewrite the digests of the variants under this build dir")
    a = ap.parse_args()
    if a.redigest:
        redigest(a.redigest)
        return 0
    from kernel_builder.hub.serve import serve

    with tempfile.TemporaryDirectory(prefix="kb-atomic-") as tmpd:
        tmp = Path(tmpd)
        builds = {g: build_generation(tmp, g, a.files, int(a.size_mb * 1e6), a.seed) for g in ("A", "B")}
        trees = {g: local_tree(b) for g, b in builds.items()}
        (tmp / "tokens").write_text(f"{TOKEN} checker acme\n")
        srv = serve(tmp / "hub", token_file=tmp / "tokens", trusted_orgs=["acme"])
        try:
            return check(a, tmp, srv, builds, trees)
        finally:
            srv.shutdown()


def check(a, tmp: Path, srv, builds: dict, trees: dict) -> int:
    t0 = time.perf_counter()
    subprocess.run(upload_cmd(builds["A"], srv.url), env=child_env(tmp), cwd=ROOT, check=True,
                   capture_output=True)
    full_s = time.perf_counter() - t0
    print(f"{a.files} files, {a.size_mb:g} MB per generation; a full upload took {full_s:.1f}s; {srv.url}")
    current, counts, bad = "A", {"old": 0, "new": 0, "mixed": 0}, []
    for n in range(1, a.rounds + 1):
        state, got = one_round(n, a, tmp, srv, builds, trees, current, full_s)
        if state == "mixed":
            counts["mixed"] += 1
            bad.append(f"round {n}: the branch is neither tree")
            continue
        counts["old" if state == current else "new"] += 1
        if got != state:
            bad.append(f"round {n}: the tree is {state} but get_kernel loaded {got}")
        current = state
    print(f"rounds {a.rounds}: old kept {counts['old']}, new landed {counts['new']}, mixed {counts['mixed']}; "
          f"loads matching the tree {a.rounds - counts['mixed'] - len([b for b in bad if 'loaded' in b])}")
    for b in bad:
        print(f"  {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
