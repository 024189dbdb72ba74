#!/usr/bin/env python3
"""Smoke test of the Ascend C CPU twin on the rmsnorm kernel (stdlib only).

Builds the twin runtime, the open cpudebug sources and libboundscheck into a
cache (skipping objects newer than their inputs), compiles
kernels_src/rmsnorm/rmsnorm_cann/rmsnorm_kernel.cpp unchanged plus a C++
driver (backends/twin/tests_driver/rmsnorm_driver.cpp), runs rms_norm and
fused_add_rms_norm against a float64 reference for f32/f16/bf16 (m200: f32/f16,
rows of whole 32-byte blocks, as the host launcher allows), then checks that
the twin rejects two bad launches: one exceeding the Unified Buffer (must
abort) and one with the wrong row count (must mismatch). Exit 1 on any failure.

  python3 scripts/twin_smoke.py --ascend-src /work/shared/ascend --arch c220 [--cache /tmp/twin-work]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "builder"))
from kernel_builder.backends.twin import recipe as twin  # noqa: E402

KERNEL_DIR = REPO / "kernels_src" / "rmsnorm" / "rmsnorm_cann"
DRIVER = twin.TWIN_DIR / "tests_driver" / "rmsnorm_driver.cpp"


def _newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _twin_headers() -> list:
    return list(twin.TWIN_INCLUDE.rglob("*.h")) + list(twin.TWIN_SRC.glob("*.h"))


def _build(cmd: list, obj: Path, inputs: list, times: list) -> None:
    """Runs cmd unless obj is newer than every input; one process at a time."""
    if obj.exists() and obj.stat().st_mtime > _newest(inputs):
        return
    obj.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-6000:])
        raise SystemExit(f"compile failed: {obj.name}")
    times.append((obj.name, time.monotonic() - t0))


def build(ascend: Path, arch: str, cache: Path, kernel_dir: Path = KERNEL_DIR) -> Path:
    root = cache / arch
    rec = twin.compile_recipe(ascend, arch, root / "gen")
    tiling = rec.gen_dir / twin.TILING_HEADER
    if not tiling.exists():
        tiling.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(twin.tiling_command(rec, ascend, tiling), check=True, stdout=subprocess.DEVNULL)
    times: list = []
    objs = []
    headers = _twin_headers()
    for src in rec.runtime_sources:
        obj = root / "obj" / (src.stem + ".o")
        _build(rec.cxx_command(src, obj), obj, [src, *headers], times)
        objs.append(obj)
    for src in rec.boundscheck_sources:
        obj = root / "boundscheck" / (src.stem + ".o")
        _build(["gcc", *rec.boundscheck_cflags, "-c", str(src), "-o", str(obj)], obj, [src], times)
        objs.append(obj)
    kernel = kernel_dir / "rmsnorm_kernel.cpp"
    kobj = root / "obj" / "rmsnorm_kernel.o"
    _build(rec.cxx_command(kernel, kobj), kobj,
           [kernel, kernel_dir / "rmsnorm_tiling.h", *headers], times)
    dobj = root / "obj" / "rmsnorm_driver.o"
    dcmd = ["g++", "-std=c++17", "-O1", "-g", *rec.defines, f"-I{twin.TWIN_INCLUDE}",
            f"-I{kernel_dir}", "-c", str(DRIVER), "-o", str(dobj)]
    _build(dcmd, dobj, [DRIVER, kernel_dir / "rmsnorm_tiling.h", *headers], times)
    exe = root / "rmsnorm_twin"
    _build(["g++", "-o", str(exe), str(kobj), str(dobj), *map(str, objs), *rec.link_libs],
           exe, [kobj, dobj, *objs], times)
    for name, secs in times:
        print(f"compiled {name:28s} {secs:6.1f} s")
    return exe


def _run(exe: Path, *args: str) -> subprocess.CompletedProcess:
    """One driver run; its stdout is echoed, its last stderr line returned in .tail."""
    res = subprocess.run([str(exe), *args], capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    lines = res.stderr.strip().splitlines()
    res.tail = next((ln for ln in lines if "refused" in ln or "not implemented" in ln),
                    lines[-1] if lines else "(no message)")
    return res


def run_checks(exe: Path, arch: str) -> bool:
    """Correct cases per dtype (one process each, so one abort does not hide the
    others), then two launches the twin must reject: over-UB and wrong rows."""
    ok = True
    for dt in ["f32", "f16"] + ([] if arch == "m200" else ["bf16"]):
        res = _run(exe, dt)
        if res.returncode != 0:
            print(f"{dt}: FAILED (exit {res.returncode}: {res.tail})")
            ok = False
    over = _run(exe, "over_ub")
    refused = over.returncode not in (0, 1) and "NOT refused" not in over.stdout
    print(f"over_ub refused: {refused} (exit {over.returncode}: {over.tail})")
    bad = _run(exe, "bad_rows")
    caught = bad.returncode == 1 and "MISMATCH detected" in bad.stdout
    print(f"bad_rows mismatch detected: {caught} (exit {bad.returncode})")
    return ok and refused and caught


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ascend-src", type=Path, required=True)
    ap.add_argument("--arch", choices=["c220", "m200"], required=True)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/twin-work"))
    ap.add_argument("--kernel-dir", type=Path, default=KERNEL_DIR,
                    help="folder with rmsnorm_kernel.cpp + rmsnorm_tiling.h (e.g. a patched "
                         "copy; use its own --cache, objects are cached by name)")
    args = ap.parse_args()
    print(f"asc-devkit {twin.devkit_version(args.ascend_src)}, arch group {args.arch}")
    exe = build(args.ascend_src, args.arch, args.cache, args.kernel_dir.resolve())
    ok = run_checks(exe, args.arch)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
