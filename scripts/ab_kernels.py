#!/usr/bin/env python3
"""A/B of launch variants of kernels_src inside one build and one process: an A/B build's launchers read
KB_AB_ACT / KB_AB_RMS / KB_AB_ROT (an integer of variant bits, 0 = the shipped choice) at every launch, so one
build holds every variant and the variants of a point are timed interleaved, round after round, on the same
buffers. Outputs of every variant are compared bitwise with variant 0 on the same inputs (NaN-poisoned before
the call) and checked against eager float32 like bench_kernels.py; torch.compile of the eager code is timed
beside them for the ratio.

    python scripts/ab_kernels.py --build-dir /tmp/build --json ab.json [--only act,rms,rot] [--rounds 3]

Timing is bench_kernels.py's: GPU time under CUDA graph replay (a graph of ~3 ms of calls over buffer sets
rotated through 4x the L2, median of 11 replays, divided by the calls). The variant is fixed when the graph is
captured (the launcher reads the variable then). Builds without the knobs ignore the variables: every variant
then times the same code (a null A/B).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kernels as bk  # noqa: E402

GATED = ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul")
# (group, env var, ops, shapes [(tokens, hidden, dtype, rotary gqa or None)], variants)
CASES = [
    ("act", "KB_AB_ACT", GATED,
     [(1, 4096, "bf16", None), (16, 4096, "bf16", None), (2048, 4096, "bf16", None), (4096, 8192, "bf16", None),
      (8192, 14336, "bf16", None), (16384, 3072, "bf16", None), (8192, 14336, "fp16", None),
      (8192, 14336, "fp32", None)],
     # 1: one output pack per thread (flat gated, 128 threads), 17: the same with 256, 33: with 64
     (0, 1, 17, 33)),
    ("act", "KB_AB_ACT", ("silu", "gelu_quick"),
     [(16, 4096, "bf16", None), (2048, 4096, "bf16", None), (4096, 8192, "bf16", None),
      (8192, 14336, "bf16", None)],
     # 2: 128-thread blocks, 8: two packs per thread, 10: both
     (0, 2, 8, 10)),
    ("act", "KB_AB_ACT", ("gelu", "gelu_tanh", "gelu_fast"),
     [(2048, 4096, "bf16", None), (8192, 14336, "bf16", None)],
     (0, 2)),
    ("rms", "KB_AB_RMS", ("rms_norm", "fused_add_rms_norm"),
     [(2048, 4096, "bf16", None), (4096, 8192, "bf16", None), (8192, 14336, "bf16", None),
      (8192, 14336, "fp16", None), (8192, 14336, "fp32", None), (32768, 4096, "bf16", None)],
     # 3: shared-memory staged rows (same threads as the cached kernel; 512 for rows past it), 11: half the
     # threads (256 for rows past the cached kernel)
     (0, 3, 11)),
    ("rot", "KB_AB_ROT", ("rotary",),
     [(16, 4096, "bf16", None), (2048, 4096, "bf16", None), (4096, 8192, "bf16", None),
      (8192, 14336, "bf16", None), (16384, 2048, "bf16", 2), (8192, 14336, "fp16", None),
      (8192, 14336, "fp32", None)],
     # 1: flat kernel with multiply-high index divisions for every head count (256 threads), 3: 128 threads
     (0, 1, 3)),
]


# Points also timed under torch.compile (the misses of the first GPU-time bench; compiling every point would
# take minutes of device time).
COMPILE_AT = {("silu_and_mul", 16, 4096, "bf16"), ("gelu_and_mul", 16, 4096, "bf16"),
              ("gelu_tanh_and_mul", 16, 4096, "bf16"), ("silu_and_mul", 2048, 4096, "bf16"),
              ("silu", 2048, 4096, "bf16"), ("gelu_quick", 2048, 4096, "bf16"),
              ("rms_norm", 8192, 14336, "bf16"), ("rms_norm", 8192, 14336, "fp32"),
              ("fused_add_rms_norm", 8192, 14336, "bf16"), ("fused_add_rms_norm", 8192, 14336, "fp32"),
              ("rotary", 8192, 14336, "bf16"), ("rotary", 8192, 14336, "fp16")}


def _raw(outs) -> list[torch.Tensor]:
    return [o.detach().clone() for o in outs]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x.contiguous().view(torch.uint8), y.contiguous().view(torch.uint8)) for x, y in zip(a, b))


def _maxdiff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.float() - y.float()).abs().nan_to_num(float("inf")).max()) for x, y in zip(a, b))


def run_point(loaded, specs, env, name, t, h, dt, gqa, variants, rounds, rotate_bytes, do_compile):
    spec = specs[name]
    kernel = loaded[spec.kernel]
    bk.ROTARY["gqa"] = gqa or 4
    dtype = bk.DTYPES[dt]
    es = torch.empty((), dtype=dtype).element_size()
    moved = spec.bytes_moved(t, h, es)
    n_sets = max(2, min(1024, math.ceil(rotate_bytes / max(moved, 1))))
    torch.manual_seed(t * 7919 + h)
    sets = [(spec.make_inputs(t, h, dtype, "cuda"), spec.make_outputs(t, h, dtype, "cuda")) for _ in range(n_sets)]
    ins, outs = sets[0]
    res = {"op": name, "shape": f"{t}x{h}", "dtype": dt, "MB": round(moved / 1e6, 2), "variants": {}}
    ref = None
    for v in variants:
        os.environ[env] = str(v)
        ok = bk.check(spec, kernel, outs, ins, dtype)  # poisoned, recomputed, vs eager float32
        got = _raw(outs)
        if ref is None:
            ref = got
        res["variants"][str(v)] = {"check": "ok" if ok else "FAIL", "bitwise": _same(ref, got),
                                   "maxdiff": 0.0 if _same(ref, got) else _maxdiff(ref, got), "us": []}
    timer = bk.Timer("cuda")
    ours = [lambda ins=ins, outs=outs: spec.call(kernel, outs, ins) for ins, outs in sets]
    os.environ[env] = "0"
    plain = timer.median_us(ours, 10, 50)
    calls = bk.graph_calls(len(ours), plain)
    comp_fns = None
    if do_compile:
        torch._dynamo.reset()
        compiled = torch.compile(spec.eager, dynamic=False)
        comp_fns = [lambda ins=ins: compiled(*ins) for ins, _ in sets]
        timer.median_us(comp_fns, 5, 10)
        res["compile_us"] = []
    for _ in range(rounds):
        for v in variants:
            os.environ[env] = str(v)
            res["variants"][str(v)]["us"].append(round(timer.graph_median_us(ours, replays=bk.GRAPH_REPLAYS,
                                                                             calls=calls), 3))
        if comp_fns is not None:
            res["compile_us"].append(round(timer.graph_median_us(comp_fns, replays=bk.GRAPH_REPLAYS, calls=calls), 3))
    os.environ[env] = "0"
    # every variant again after the timing (graph replays included), on the last buffer set
    for v in variants:
        os.environ[env] = str(v)
        if not bk.check(spec, kernel, sets[-1][1], sets[-1][0], dtype):
            res["variants"][str(v)]["check"] = "FAIL"
    os.environ[env] = "0"
    del sets, ours, comp_fns
    torch.cuda.empty_cache()
    return res


def fmt(res) -> str:
    vs = res["variants"]
    base = statistics.median(vs["0"]["us"])
    comp = statistics.median(res["compile_us"]) if res.get("compile_us") else None
    parts = []
    for v, r in vs.items():
        m = statistics.median(r["us"])
        tag = "=" if r["bitwise"] else f"~{r['maxdiff']:.2g}"
        parts.append(f"v{v} {m:8.2f} ({base / m:4.2f}x{', /c %.2f' % (comp / m) if comp else ''}) {tag}"
                     + ("" if r["check"] == "ok" else " FAIL"))
    head = f"{res['op']:<18} {res['shape']:>11} {res['dtype']:>4}"
    return head + (f" compile {comp:8.2f} |" if comp else " |") + " | ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", required=True, help="directory with activation/, rmsnorm/, rotary/ builds")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--only", default="act,rms,rot", help="comma list of groups: act, rms, rot")
    p.add_argument("--ops", default=None, help="comma list of op names (default: all of the groups)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("ab_kernels.py needs a CUDA device")
    import kernels

    dirs = bk.parse_build_dirs([args.build_dir])
    loaded = {n: kernels.get_local_kernel(d) for n, d in dirs.items()}
    specs = {s.name: s for s in bk._act_specs() + bk._norm_specs() + bk._rotary_specs()}
    l2 = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20) or (50 << 20))
    groups = set(args.only.split(","))
    ops = set(args.ops.split(",")) if args.ops else None
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; µs = GPU time under graph replay, median of "
          f"{args.rounds} rounds; (Nx) = v0 / variant, /c = compile / variant; '=' bitwise equal to v0", flush=True)
    results = []
    order = args.only.split(",")
    for group, env, names, shapes, variants in sorted(CASES, key=lambda c: order.index(c[0]) if c[0] in order else 99):
        if group not in groups:
            continue
        for name in names:
            if ops and name not in ops:
                continue
            for t, h, dt, gqa in shapes:
                r = run_point(loaded, specs, env, name, t, h, dt, gqa, variants, args.rounds, 4 * l2,
                              args.compile and (name, t, h, dt) in COMPILE_AT)
                r["env"] = env
                results.append(r)
                print(fmt(r), flush=True)
                args.json.write_text(json.dumps(results, indent=1))
    bad = [r for r in results for v in r["variants"].values() if v["check"] != "ok"]
    print(f"{len(results)} points; {len(bad)} failed checks")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
