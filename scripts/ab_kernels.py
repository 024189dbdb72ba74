#!/usr/bin/env python3
"""A/B of launch variants of kernels_src inside one build and one process: an A/B build's launchers read
KB_AB_ACT / KB_AB_RMS / KB_AB_ROT (an integer of variant bits, 0 = the shipped choice) at every launch, so one
build holds every variant and the variants of a point are timed interleaved, round after round, on the same
buffers. Outputs of every variant are compared bitwise with variant 0 on the same inputs (NaN-poisoned before
the call) and checked against eager float32 like bench_kernels.py; torch.compile of the eager code is timed
beside them for the ratio. Ours allocates its output on every timed call, as bench_kernels.py's main column
(the first run, docs/ab_h200_run1.txt, wrote into rotated preallocated outputs instead).

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
# (group, env var, ops, shapes [(tokens, hidden, dtype, rotary gqa or None)], variants): the cases of the last
# A/B run. Knobs exist only in knob builds (a copy of kernels_src with a docs/ab_h200_run*_knobs.patch applied);
# the variants that won are the shipped kernels' only path, so a knob build's variant 0 is what ships. Earlier
# runs: run 1 (docs/ab_h200_run1.txt, knobs of commit 1917166: gated one pack per thread, flat block sizes,
# shared-memory rms_norm rows, rotary multiply-high indexing); run 7 (KB_AB_ACT 64 = unary flat kernel with a
# 32-bit index and no loop, kept; 128 = weak ld.global loads, no gain); runs 9, 10, 13 and 15 below (the CASES
# of runs 9 and 10 are in commit 0c543e5's version of this file, run 13's in c00af40's, run 15's in this file's
# first commit with run 16, run 16's in 1253c2b's, run 18's in 9ab1a0a's); the CASES here are run 23's.
CASES = [
    # Run 9 (docs/ab_h200_run9.txt, knob source docs/ab_h200_run9_knobs.patch): KB_AB_RMS 1 / 2 = one wave of
    # rows with 1 / 2 packs per thread instead of 4 (1 kept: launch_one_wave), 4 = one-barrier block sum, 8 =
    # short rows in one pass, 16 = short rows one pack per lane, 32 = many rows 2 packs per thread, 64 = the
    # persistent zone in one pass; KB_AB_QK 1 = qk_norm_rotary loads weight/cos/sin before the reduction (kept).
    # Run 10 (docs/ab_h200_run10.txt, knob source docs/ab_h200_run10_knobs.patch): KB_AB_ACT 5 / 10 = unary and
    # gated flat kernels with 8- / 4-byte packs; KB_AB_RMS 1 = short rows with kCache fitted to the packs per
    # lane, 2 = short rows in one pass, 4 / 8 = short rows in 64- / 32-thread blocks, 16 / 32 = many rows on the
    # streaming kernel at 512 / 256 threads, 64 = one wave, fused: residual_out stored after the reduction.
    # Run 13 (docs/ab_h200_run13.txt, knob source docs/ab_h200_run13_knobs.patch): KB_AB_ACT 1 = the flat kernels
    # with predicated 16-byte accesses and a compile-time block size (no branch before the first load);
    # KB_AB_RMS 16 / 32 = the one-pass many-rows kernel under __launch_bounds__(256, 5 / 6), 256 * D = one wave of
    # rows with diagnostic D (wrong outputs on purpose, timing only: 1 no residual store, 2 residual not loaded,
    # 3 both, 4 no block reduction, 8 no weight).
    # Run 15 (docs/ab_h200_run15.txt, knob source docs/ab_h200_run15_knobs.patch): KB_AB_RMS 1 = block sums with
    # one barrier (every warp finishes the sum from the warps' partials; kept), 8 / 16 / 32 = one wave of rows
    # split over a thread block cluster of up to 8 / 4 / 2 blocks (sm_90, partial sums through distributed shared
    # memory; 11-16 % slower), 4 = short rows in one pass with the weight loaded with the row (kept). Cases: the
    # first group below with variants (0, 1, 8, 16, 32, 9); 4096x8192, 2048x4096, 8192x14336 with (0, 1);
    # 16384x1024, 262144x128 with (0, 4, 1, 5).
    # Run 16 (docs/ab_h200_run16.txt, knob source docs/ab_h200_run16_knobs.patch): KB_AB_RMS 1 = run 15's
    # one-barrier block sums; 64 = rows on a lean one-row-per-block kernel (exactly npacks / kC threads, 32-bit
    # strides, no bounds checks before the loads, evict-first row loads, the weight copied to shared memory by
    # cp.async issued first, one-barrier sum, mean by a multiply for power-of-two rows), 128 = the same with the
    # weight loaded after the reduction, 256 = without the load hints, 8 = the weight in registers (ptxas then
    # places its load after the row's first use); 1024 / 2048 / 4096 = the lean kernel at 1 / 2 / 4 packs per
    # thread where the many-rows zones ran the persistent grid (1024, 2048) or the one-pass cached kernel (4096);
    # 512 = unfused 1024-element rows in one pass (64-thread blocks) instead of the persistent grid, 4 = short
    # rows with the weight loaded with the row. Kept: the lean kernel as variant 8 builds it (one wave of rows;
    # fused rows of one to three waves at 1 or 2 packs), 512 + 4.
    # Run 18 (docs/ab_h200_run18.txt, knob source docs/ab_h200_run18_knobs.patch, on the kernels of 1253c2b):
    # KB_AB_RMS 1 = the one-pass many-rows cached kernel loads rows with the L1 evict-first hint, 2 = that and
    # the weight with evict-last, 4 = the short-row lane groups load rows with evict-first.
    # Run 19 (docs/ab_h200_run19.txt, knob source docs/ab_h200_run19_knobs.patch): KB_AB_RMS bit 0 = rows of the
    # one-pass zones (the cached kernel's, the staged kernel's) on rms_norm_bulk_kernel (sm_90 bulk copies of whole
    # rows into a ring of shared-memory stages, a persistent grid); bits 1-2 packs per thread (0 auto, 1 = 2,
    # 2 = 4, 3 = 8), bits 3-6 stages (0 = 4), bits 7-9 blocks per SM at most (0 = 8). Cases: rms_norm and
    # fused_add_rms_norm at 4096x8192, 8192x8192, 32768x4096, 8192x14336 bf16 and fp32; variants (0, 421, 307, 789,
    # 291, 541, 227, 197, 153, 281).
    # Run 23 (docs/ab_h200_run23.txt, knob source docs/ab_h200_run23_knobs.patch), the short-row lane groups only:
    # KB_AB_RMS 1 = fused residual_out stored after the reduction, beside the output (as Triton's kernel for
    # compile does), 2 = the weight loaded with the L1 evict-last hint (as Triton's), 3 = both.
    ("rms", "KB_AB_RMS", ("rms_norm", "fused_add_rms_norm"),
     [(16384, 1024, "bf16", None), (262144, 128, "bf16", None)],
     (0, 1, 2, 3)),
]

# Points also timed under torch.compile (the misses of the first GPU-time bench; compiling every point would
# take minutes of device time).
COMPILE_AT = {(op, t, 4096, "bf16") for op in GATED + ("silu", "gelu_quick", "gelu", "gelu_tanh") for t in (16, 2048)}
COMPILE_AT |= {(op, t, h, "bf16") for op in ("rms_norm", "fused_add_rms_norm")
               for t, h in ((16, 4096), (262144, 128), (16384, 1024), (4096, 8192), (2048, 4096), (64, 4096),
                                  (1, 4096))}


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
    # timed as bench_kernels' main column: the output allocated per call, as eager and compiled code do
    ours = [lambda ins=ins: spec.call(kernel, spec.make_outputs(t, h, dtype, "cuda"), ins) for ins, _ in sets]
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


def run_qk(rot, variants, b, s, rounds, rotate_bytes, dt="bf16", heads=(16, 8, 128)):
    """qk_norm_rotary (KB_AB_QK) on Qwen3-shaped q/k views, outputs into rotated preallocated buffers."""
    import bench_qk_norm_rotary as bq

    dtype = bk.DTYPES[dt]
    qh, kh, d = heads
    es = torch.empty((), dtype=dtype).element_size()
    moved = (2 * b * s * (qh + kh) * d + 2 * b * s * d + 2 * d) * es
    n_sets = max(2, min(1024, math.ceil(rotate_bytes / moved)))
    g = torch.Generator(device="cuda").manual_seed(0)
    sets = []
    for _ in range(n_sets):
        qv = torch.randn(b, s, qh, d, device="cuda", generator=g).mul_(3).to(dtype)
        kv = torch.randn(b, s, kh, d, device="cuda", generator=g).to(dtype)
        ang = torch.rand(b, s, d // 2, device="cuda", generator=g) * 100
        ang = torch.cat((ang, ang), -1)
        ins = (qv.transpose(1, 2), kv.transpose(1, 2), (1 + 0.1 * torch.randn(d, device="cuda", generator=g)).to(dtype),
               (1 + 0.1 * torch.randn(d, device="cuda", generator=g)).to(dtype), ang.cos().to(dtype),
               ang.sin().to(dtype))
        outs = (torch.empty_like(qv).transpose(1, 2), torch.empty_like(kv).transpose(1, 2))
        sets.append((ins, outs))

    def call(ins, outs):
        rot.ops.qk_norm_rotary(outs[0], outs[1], *ins, bq.EPS)

    ins, outs = sets[0]
    ref = bq.ref64(ins[0].transpose(1, 2), ins[1].transpose(1, 2), *ins[2:])
    scale = max(ref[0].abs().max().item(), ref[1].abs().max().item())
    res = {"op": "qk_norm_rotary", "shape": f"{b}x{s}", "dtype": dt, "MB": round(moved / 1e6, 2), "variants": {}}
    base = None
    for v in variants:
        os.environ["KB_AB_QK"] = str(v)
        for o in outs:
            o.fill_(float("nan"))
        call(ins, outs)
        got = _raw(outs)
        base = got if base is None else base
        err = max((o.double() - r).abs().max().item() for o, r in zip(got, ref)) / (torch.finfo(dtype).eps * scale)
        res["variants"][str(v)] = {"check": "ok" if err < 1.0 else f"FAIL err {err:.3f} eps",
                                   "bitwise": _same(base, got), "maxdiff": _maxdiff(base, got), "us": [],
                                   "err_eps": round(err, 3)}
    timer = bk.Timer("cuda")
    fns = [lambda ins=ins, outs=outs: call(ins, outs) for ins, outs in sets]
    os.environ["KB_AB_QK"] = "0"
    calls = bk.graph_calls(len(fns), timer.median_us(fns, 10, 50))
    for _ in range(rounds):
        for v in variants:
            os.environ["KB_AB_QK"] = str(v)
            res["variants"][str(v)]["us"].append(round(timer.graph_median_us(fns, replays=bk.GRAPH_REPLAYS,
                                                                             calls=calls), 3))
    os.environ["KB_AB_QK"] = "0"
    del sets, fns
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
    p.add_argument("--only", default="act", help="comma list of groups: act, rms, qk (qk_norm_rotary, KB_AB_QK: "
                                                 "none now)")
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
    if "qk" in groups and "rotary" in loaded:
        for b, sq in ((8, 2048), (1, 16), (4, 512)):
            r = run_qk(loaded["rotary"], (0, 1), b, sq, args.rounds, 4 * l2)
            r["env"] = "KB_AB_QK"
            results.append(r)
            print(fmt(r), flush=True)
            args.json.write_text(json.dumps(results, indent=1))
    bad = [r for r in results for v in r["variants"].values() if v["check"] != "ok"]
    print(f"{len(results)} points; {len(bad)} failed checks")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
