#!/usr/bin/env python3
"""Benchmark `kernel-builder build --all`: what running variants side by side buys, what a no-op costs,
and what the shared ccache volume saves.

    python scripts/bench_matrix.py kernels_src/activation -j 2 --variant 'torch21{1,3}-*' \\
        --base-image local/debian:bookworm

Runs, each with the real CLI and a private kernel-builder cache (so "cold" means cold):
  1. cold matrix build, -j N       -> wall time vs the sum of the per-variant times (the parallel gain)
  2. the same command again        -> the no-op time (nothing changed: every variant "up to date")
  3. one variant rebuilt with only ccache kept (kernel-builder's own build trees and stamps dropped)
     vs the same variant's cold time -> what the ccache volume shared by all containers saves
Images are built first and not timed (`kernel-builder images build`); their build time is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def kb(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "kernel_builder", *args], capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"kernel-builder {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
    return wall, r.stdout


def per_variant(summary: str) -> dict[str, tuple[float, str]]:
    """variant -> (seconds, result) from the summary table."""
    rows = {}
    for line in summary.splitlines():
        m = re.match(r"(torch\S+)\s+\S+\s+([\d.]+) s\s+\S+(?: KiB)?\s+(done|up to date|failed|cancelled)", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), m.group(3))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--base-image")
    ap.add_argument("--rebuild-variant", help="variant for the ccache comparison (default: the first CUDA one)")
    ap.add_argument("--out", help="build output (default: a temporary directory)")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kb-bench-matrix-"))
    env = dict(os.environ, KERNEL_BUILDER_CACHE=str(work / "cache"))
    out = Path(a.out) if a.out else work / "build"
    common = ["--base-image", a.base_image] if a.base_image else []
    sel = [x for v in a.variant for x in ("--variant", v)]

    t, _ = kb(["images", "build", *common], env)
    print(f"images ready in {t:.1f} s (not part of the figures below)")

    cmd = ["build", a.project, "--all", "-j", str(a.jobs), "--out", str(out), *sel, *common]
    print("$ kernel-builder " + " ".join(cmd), flush=True)
    wall, text = kb(cmd, env)
    cold = per_variant(text)
    total = sum(s for s, _ in cold.values())
    print(text.split("\n", 1)[1] if "\n" in text else text)
    print(f"1. cold matrix: {len(cold)} variants, wall {wall:.1f} s, sum of per-variant times {total:.1f} s, "
          f"parallel gain {total / wall:.2f}x with -j {a.jobs}")

    wall2, text2 = kb(cmd, env)
    states = {r for _, r in per_variant(text2).values()}
    print(f"2. second run, nothing changed: {wall2:.2f} s ({', '.join(sorted(states))})")

    cuda = [v for v in cold if "-cu" in v]
    target = a.rebuild_variant or (cuda[0] if cuda else next(iter(cold)))
    cache = work / "cache"
    for child in cache.iterdir():  # keep ccache (and the runtime copy of kernel-builder), drop the rest
        if child.name not in ("ccache", "runtime"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    one = ["build", a.project, "--all", "--out", str(out), "--variant", target, *common]
    shutil.rmtree(out / target)
    wall3, text3 = kb(one, env)
    warm_s = per_variant(text3)[target][0]
    print(f"3. {target}: cold {cold[target][0]:.1f} s, ccache-warm rebuild {warm_s:.1f} s "
          f"({cold[target][0] / warm_s:.1f}x faster; command wall {wall3:.1f} s)")
    ccache = shutil.which("ccache")
    if ccache:
        s = subprocess.run([ccache, "-s"], capture_output=True, text=True, env=dict(env, CCACHE_DIR=str(cache / "ccache")))
        hits = [ln.strip() for ln in s.stdout.splitlines() if re.search(r"Hits|Misses|hit|miss", ln)][:4]
        print("   ccache: " + "; ".join(hits))
    if not a.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
