#!/usr/bin/env python3
"""What the GPU runs for one op and shape: each kernel's name, grid, block, registers per thread, shared memory
and duration, for ours, eager and torch.compile of the eager code, read from the profiler's trace (CUPTI's kernel
records). Used to explain the points where torch.compile is faster than ours: same launch geometry or not, how
many kernels, how many registers.

    python scripts/kernel_geometry.py --build-dir /tmp/build --points silu:16x4096:bf16,rms_norm:16x4096:bf16
    ncu --clock-control none --section SpeedOfLight python scripts/kernel_geometry.py ... --calls-only

Needs a CUDA device (the trace has no kernel records on the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kernels as bk  # noqa: E402


def kernels_of(fn, runs: int = 3) -> list[dict]:
    """Kernel records of the last of `runs` calls of fn (earlier calls warm up caches and autotuning)."""
    for _ in range(runs - 1):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    out = []
    for e in events:
        if e.get("cat") != "kernel":
            continue
        a = e.get("args", {})
        out.append({"name": e.get("name", "?")[:90], "grid": a.get("grid"), "block": a.get("block"),
                    "regs": a.get("registers per thread"), "smem": a.get("shared memory"),
                    "us": round(float(e.get("dur", 0.0)), 2)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", required=True, help="directory with activation/, rmsnorm/, rotary/ builds")
    p.add_argument("--points", required=True, help="comma list of op:TOKENSxHIDDEN:dtype")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--calls-only", action="store_true",
                   help="only call each function a few times, no trace (to run under ncu, which owns CUPTI)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("kernel_geometry.py needs a CUDA device")
    import kernels

    dirs = bk.parse_build_dirs([args.build_dir])
    loaded = {n: kernels.get_local_kernel(d) for n, d in dirs.items()}
    specs = {s.name: s for s in bk._act_specs() + bk._norm_specs() + bk._rotary_specs()}
    results = []
    for item in args.points.split(","):
        name, shape, dt = item.split(":")
        (t, h), = bk.parse_shapes(shape)
        spec, dtype = specs[name], bk.DTYPES[dt]
        ins = spec.make_inputs(t, h, dtype, "cuda")
        torch._dynamo.reset()
        compiled = torch.compile(spec.eager, dynamic=False)
        kernel = loaded[spec.kernel]
        fns = {"ours": lambda: spec.call(kernel, spec.make_outputs(t, h, dtype, "cuda"), ins),
               "eager": lambda: spec.eager(*ins), "compile": lambda: compiled(*ins)}
        for who, fn in fns.items():
            if args.calls_only:
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                continue
            for k in kernels_of(fn):
                row = {"op": name, "shape": shape, "dtype": dt, "who": who, **k}
                results.append(row)
                print(f"{name:<18} {shape:>11} {dt:>4} {who:<7} grid {str(k['grid']):<16} block "
                      f"{str(k['block']):<14} regs {k['regs']!s:>4} smem {k['smem']!s:>6} {k['us']:>8.2f} µs  "
                      f"{k['name']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
