#!/usr/bin/env python3
"""Benchmark the bundled example kernels (kernels_src/activation, kernels_src/rmsnorm, kernels_src/rotary).

Builds nothing: point it at build outputs (directories holding variant
directories such as ``torch214-cxx11-cu130-x86_64-linux/``)::

    kernel-builder build kernels_src/activation --out /tmp/kb/activation
    kernel-builder build kernels_src/rmsnorm --out /tmp/kb/rmsnorm
    python scripts/bench_kernels.py --build-dir /tmp/kb            # all found, by sub-directory
    python scripts/bench_kernels.py --build-dir rotary=/tmp/kb/rotary --rotary-head-dim 128 --rotary-gqa 4
    python scripts/bench_kernels.py --build-dir activation=/tmp/kb/activation --dtypes bf16,fp16
    python scripts/bench_kernels.py --build-dir /tmp/kb --graph       # small shapes, CUDA graph replay
    python scripts/bench_kernels.py --build-dir /tmp/kb --compile --csv bench.csv

For every op and shape it times our kernel against torch eager (and
``torch.compile`` of the same eager code with ``--compile``): median of many
runs measured with CUDA events, inputs rotated over enough buffer sets to not
sit in L2. Before and after timing, our output is poisoned with NaN, recomputed
and checked against eager (computed in float32). The device's copy bandwidth
(``dst.copy_(src)`` of a large tensor, bytes read + written) is measured in the
same run, and each op's bandwidth (the bytes it must read and write) is given
as a percentage of it.

Shapes are ``tokens x hidden``; for gated activations (``*_and_mul``) hidden is
the output width, the input is ``tokens x 2*hidden``. For ``rotary`` (vs
transformers' eager ``apply_rotary_pos_emb``) hidden is the query width: q is
``[1, hidden/head_dim heads, tokens, head_dim]`` and k has ``--rotary-gqa``
times fewer heads, both laid out as transformers makes them (the transpose of a
``[1, tokens, heads, head_dim]`` projection), cos/sin are ``[1, tokens,
head_dim]``; bytes = read q, k, cos, sin + write q_out, k_out.

Without a GPU it runs on the CPU (wall-clock timing) so the script itself can
be smoke-tested; those numbers are not meaningful benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_SHAPES = "16x4096,512x4096,4096x8192,8192x14336"
DEFAULT_GRAPH_SHAPES = "1x4096,16x4096,64x4096,256x4096"
CHECK_TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (2e-3, 1e-3), torch.bfloat16: (1.6e-2, 1e-2)}


# --- eager references (what a model runs without the kernel) -----------------
def _gelu_fast(x):
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _gelu_quick(x):
    return x * torch.sigmoid(1.702 * x)


def _gated(act):
    def fn(x):
        d = x.shape[-1] // 2
        return act(x[..., :d]) * x[..., d:]

    return fn


def _rms_norm(x, w, eps=1e-6):
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dtype)


def _fused_add_rms_norm(x, r, w, eps=1e-6):
    s = x + r
    return _rms_norm(s, w, eps), s


def _rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _apply_rotary_pos_emb_local(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)


def _eager_rotary() -> Callable:
    """transformers' apply_rotary_pos_emb (what a Llama runs), else the same math here."""
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    except Exception:  # transformers missing or incompatible
        return _apply_rotary_pos_emb_local
    return apply_rotary_pos_emb


@dataclass
class OpSpec:
    kernel: str  # "activation", "rmsnorm" or "rotary"
    name: str
    eager: Callable  # (*inputs) -> output(s)
    make_inputs: Callable  # (tokens, hidden, dtype, device) -> tuple of inputs
    make_outputs: Callable  # (tokens, hidden, dtype, device) -> tuple of outputs
    call: Callable  # (kernel module, outputs, inputs) -> None
    bytes_moved: Callable  # (tokens, hidden, element size) -> int


def _act_specs() -> list[OpSpec]:
    specs = []
    gated = {
        "silu_and_mul": F.silu,
        "gelu_and_mul": F.gelu,
        "gelu_tanh_and_mul": lambda t: F.gelu(t, approximate="tanh"),
    }
    for name, act in gated.items():
        specs.append(
            OpSpec(
                "activation",
                name,
                _gated(act),
                lambda t, h, dt, dev: (torch.randn(t, 2 * h, dtype=dt, device=dev),),
                lambda t, h, dt, dev: (torch.empty(t, h, dtype=dt, device=dev),),
                lambda k, outs, ins, name=name: getattr(k.ops, name)(outs[0], ins[0]),
                lambda t, h, es: 3 * t * h * es,
            )
        )
    unary = {
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "gelu_fast": _gelu_fast,
        "gelu_quick": _gelu_quick,
    }
    for name, act in unary.items():
        specs.append(
            OpSpec(
                "activation",
                name,
                act,
                lambda t, h, dt, dev: (torch.randn(t, h, dtype=dt, device=dev),),
                lambda t, h, dt, dev: (torch.empty(t, h, dtype=dt, device=dev),),
                lambda k, outs, ins, name=name: getattr(k.ops, name)(outs[0], ins[0]),
                lambda t, h, es: 2 * t * h * es,
            )
        )
    return specs


def _norm_specs() -> list[OpSpec]:
    return [
        OpSpec(
            "rmsnorm",
            "rms_norm",
            _rms_norm,
            lambda t, h, dt, dev: (torch.randn(t, h, dtype=dt, device=dev), torch.randn(h, dtype=dt, device=dev)),
            lambda t, h, dt, dev: (torch.empty(t, h, dtype=dt, device=dev),),
            lambda k, outs, ins: k.ops.rms_norm(outs[0], ins[0], ins[1], 1e-6),
            lambda t, h, es: (2 * t * h + h) * es,
        ),
        OpSpec(
            "rmsnorm",
            "fused_add_rms_norm",
            _fused_add_rms_norm,
            lambda t, h, dt, dev: (
                torch.randn(t, h, dtype=dt, device=dev),
                torch.randn(t, h, dtype=dt, device=dev),
                torch.randn(h, dtype=dt, device=dev),
            ),
            lambda t, h, dt, dev: (torch.empty(t, h, dtype=dt, device=dev), torch.empty(t, h, dtype=dt, device=dev)),
            lambda k, outs, ins: k.ops.fused_add_rms_norm(outs[0], outs[1], ins[0], ins[1], ins[2], 1e-6),
            lambda t, h, es: (4 * t * h + h) * es,
        ),
    ]


# Rotary geometry (set from the command line): head_dim and q heads per k head.
ROTARY = {"head_dim": 128, "gqa": 4}


def _rotary_heads(h: int) -> tuple[int, int, int]:
    d = ROTARY["head_dim"]
    if h % d:
        raise ValueError(f"hidden {h} is not a multiple of --rotary-head-dim {d}")
    hq = h // d
    return hq, max(1, hq // ROTARY["gqa"]), d


def _rotary_specs() -> list[OpSpec]:
    def make_inputs(t, h, dt, dev):
        hq, hk, d = _rotary_heads(h)
        q = torch.randn(1, t, hq, d, dtype=dt, device=dev).transpose(1, 2)
        k = torch.randn(1, t, hk, d, dtype=dt, device=dev).transpose(1, 2)
        angles = torch.rand(1, t, d, device=dev) * 6.2832
        return q, k, angles.cos().to(dt), angles.sin().to(dt)

    def make_outputs(t, h, dt, dev):
        hq, hk, d = _rotary_heads(h)
        return (torch.empty(1, t, hq, d, dtype=dt, device=dev).transpose(1, 2),
                torch.empty(1, t, hk, d, dtype=dt, device=dev).transpose(1, 2))

    def bytes_moved(t, h, es):
        hq, hk, d = _rotary_heads(h)
        return (2 * t * (hq + hk) * d + 2 * t * d) * es

    return [
        OpSpec(
            "rotary",
            "rotary",
            _eager_rotary(),
            make_inputs,
            make_outputs,
            lambda k, outs, ins: k.ops.apply_rotary(outs[0], outs[1], *ins),
            bytes_moved,
        )
    ]


# --- timing --------------------------------------------------------------------
class Timer:
    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def median_us(self, fns: list[Callable], warmup: int, iters: int) -> float:
        """Median time of one call, rotating over fns (one per buffer set)."""
        n = len(fns)
        for i in range(warmup):
            fns[i % n]()
        self.sync()
        times = []
        if self.cuda:
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
            for i in range(iters):
                starts[i].record()
                fns[i % n]()
                ends[i].record()
            torch.cuda.synchronize()
            times = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
        else:
            for i in range(iters):
                t0 = time.perf_counter()
                fns[i % n]()
                times.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(times)

    def graph_median_us(self, fns: list[Callable], replays: int) -> float:
        """Per-call time under CUDA graph replay: one graph runs every fn once."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up (allocations, lazy init) off the capture
            for fn in fns:
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for fn in fns:
                fn()
        for _ in range(3):
            graph.replay()
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
        for i in range(replays):
            starts[i].record()
            graph.replay()
            ends[i].record()
        torch.cuda.synchronize()
        per_replay = statistics.median(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))
        return per_replay / len(fns)


def copy_bandwidth_gbs(timer: Timer, device: str, nbytes: int) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    us = timer.median_us([lambda: dst.copy_(src)], warmup=5, iters=30)
    del src, dst
    return 2 * nbytes / (us * 1e-6) / 1e9


# --- driver ----------------------------------------------------------------------
KERNEL_NAMES = ("activation", "rmsnorm", "rotary")


def parse_build_dirs(values: list[str]) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for v in values:
        if "=" in v:
            name, path = v.split("=", 1)
            if name not in KERNEL_NAMES:
                raise SystemExit(f"--build-dir: unknown kernel {name!r} (expected one of {', '.join(KERNEL_NAMES)})")
            dirs[name] = Path(path)
        else:
            root = Path(v)
            found = False
            for name in KERNEL_NAMES:
                if (root / name).is_dir():
                    dirs[name] = root / name
                    found = True
            if not found:
                raise SystemExit(f"--build-dir {v}: no {'/, '.join(KERNEL_NAMES)}/ sub-directory")
    return dirs


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        t, h = item.lower().split("x")
        shapes.append((int(t), int(h)))
    return shapes


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def check(spec: OpSpec, kernel, outs, ins, dtype) -> bool:
    for o in outs:
        o.fill_(float("nan"))
    spec.call(kernel, outs, ins)
    expected = _as_tuple(spec.eager(*(i.float() for i in ins)))
    rtol, atol = CHECK_TOL[dtype]
    return all(torch.allclose(o.float(), e.to(dtype).float(), rtol=rtol, atol=atol) for o, e in zip(outs, expected))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", action="append", required=True,
                   help="NAME=PATH (NAME: activation, rmsnorm, rotary) or a directory with any of "
                        "activation/, rmsnorm/, rotary/; repeatable")
    p.add_argument("--dtypes", default="bf16", help="comma list of bf16, fp16, fp32 (default bf16)")
    p.add_argument("--shapes", default=None,
                   help=f"comma list of TOKENSxHIDDEN (default {DEFAULT_SHAPES}; with --graph {DEFAULT_GRAPH_SHAPES})")
    p.add_argument("--ops", default=None, help="comma list of op names to run (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the eager code")
    p.add_argument("--graph", action="store_true", help="time under CUDA graph replay (no launch overhead); small shapes by default")
    p.add_argument("--iters", type=int, default=200, help="timed runs per measurement (default 200)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rotate-bytes", type=float, default=None,
                   help="bytes of distinct buffers to rotate over (default 4x the L2 size, at least 2 sets)")
    p.add_argument("--copy-bytes", type=int, default=1 << 30, help="tensor size for the copy-bandwidth measurement")
    p.add_argument("--rotary-head-dim", type=int, default=128, help="rotary: head_dim (default 128)")
    p.add_argument("--rotary-gqa", type=int, default=4, help="rotary: q heads per k head (default 4)")
    p.add_argument("--csv", type=Path, default=None, help="write the rows to this CSV file")
    p.add_argument("--device", default=None, help="default cuda if available, else cpu (smoke test only)")
    args = p.parse_args(argv)

    import kernels

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.graph and not device.startswith("cuda"):
        raise SystemExit("--graph needs a CUDA device")
    if not device.startswith("cuda"):
        print("warning: no CUDA device; timing on the CPU (a smoke test of this script, not a benchmark)",
              file=sys.stderr)
        args.copy_bytes = min(args.copy_bytes, 64 << 20)
        args.iters = min(args.iters, 10)
        args.warmup = min(args.warmup, 2)
    timer = Timer(device)
    ROTARY.update(head_dim=args.rotary_head_dim, gqa=args.rotary_gqa)
    dtypes = [DTYPES[d.strip()] for d in args.dtypes.split(",")]
    shapes = parse_shapes(args.shapes or (DEFAULT_GRAPH_SHAPES if args.graph else DEFAULT_SHAPES))
    wanted = set(args.ops.split(",")) if args.ops else None

    build_dirs = parse_build_dirs(args.build_dir)
    loaded = {name: kernels.get_local_kernel(path) for name, path in build_dirs.items()}
    all_specs = _act_specs() + _norm_specs() + (_rotary_specs() if "rotary" in loaded else [])
    specs = [s for s in all_specs if s.kernel in loaded and (wanted is None or s.name in wanted)]
    if not specs:
        raise SystemExit("nothing to run (no kernel loaded or --ops matched nothing)")

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        l2 = int(getattr(props, "L2_cache_size", 50 << 20) or (50 << 20))
        dev_name = props.name
    else:
        l2 = 32 << 20
        dev_name = "cpu"
    rotate_bytes = args.rotate_bytes or 4 * l2
    copy_gbs = copy_bandwidth_gbs(timer, device, args.copy_bytes)
    mode = "CUDA graph replay" if args.graph else "eager launches, CUDA events" if timer.cuda else "CPU wall clock"
    print(f"device: {dev_name}; torch {torch.__version__}; timing: {mode}, median of {args.iters}")
    print(f"copy bandwidth: {copy_gbs:.0f} GB/s (copy_ of {args.copy_bytes / 2**20:.0f} MiB, read + write)")
    for name, k in loaded.items():
        print(f"{name}: {k.__name__} from {build_dirs[name]}")
    print()

    rows = []
    header = ["op", "shape", "dtype", "us_ours", "us_eager"] + (["us_compile"] if args.compile else []) + [
        "GB/s_ours", "%copy_bw", "speedup_vs_eager", "check"]
    print(f"{'op':<20} {'shape':>11} {'dtype':>5} {'µs ours':>9} {'µs eager':>9}"
          + (f" {'µs compile':>10}" if args.compile else "")
          + f" {'GB/s ours':>9} {'%copy':>6} {'speedup':>8} {'check':>6}")
    for dtype in dtypes:
        dname = next(k for k, v in DTYPES.items() if v == dtype)
        es = torch.empty((), dtype=dtype).element_size()
        for t, h in shapes:
            for spec in specs:
                kernel = loaded[spec.kernel]
                if spec.kernel == "rotary" and h % ROTARY["head_dim"]:
                    print(f"{spec.name:<20} {t}x{h}: skipped (hidden not a multiple of head_dim "
                          f"{ROTARY['head_dim']})")
                    continue
                moved = spec.bytes_moved(t, h, es)
                n_sets = max(2, min(1024, math.ceil(rotate_bytes / max(moved, 1))))
                sets = []
                for _ in range(n_sets):
                    ins = spec.make_inputs(t, h, dtype, device)
                    outs = spec.make_outputs(t, h, dtype, device)
                    sets.append((ins, outs))
                ok = check(spec, kernel, sets[0][1], sets[0][0], dtype)

                ours = [lambda ins=ins, outs=outs: spec.call(kernel, outs, ins) for ins, outs in sets]
                eager = [lambda ins=ins: spec.eager(*ins) for ins, _ in sets]
                if args.graph:
                    us_ours = timer.graph_median_us(ours, replays=max(10, args.iters // 10))
                    us_eager = timer.graph_median_us(eager, replays=max(10, args.iters // 10))
                else:
                    us_ours = timer.median_us(ours, args.warmup, args.iters)
                    us_eager = timer.median_us(eager, args.warmup, args.iters)
                us_compile = None
                if args.compile:
                    compiled = torch.compile(spec.eager, dynamic=False)
                    comp = [lambda ins=ins: compiled(*ins) for ins, _ in sets]
                    us_compile = timer.median_us(comp, args.warmup, args.iters)
                ok = ok and check(spec, kernel, sets[-1][1], sets[-1][0], dtype)
                del sets, ours, eager

                gbs = moved / (us_ours * 1e-6) / 1e9
                row = {
                    "op": spec.name,
                    "shape": f"{t}x{h}",
                    "dtype": dname,
                    "us_ours": round(us_ours, 2),
                    "us_eager": round(us_eager, 2),
                    "GB/s_ours": round(gbs, 1),
                    "%copy_bw": round(100 * gbs / copy_gbs, 1),
                    "speedup_vs_eager": round(us_eager / us_ours, 2),
                    "check": "ok" if ok else "FAIL",
                }
                if args.compile:
                    row["us_compile"] = round(us_compile, 2)
                rows.append(row)
                print(f"{spec.name:<20} {row['shape']:>11} {dname:>5} {us_ours:9.1f} {us_eager:9.1f}"
                      + (f" {us_compile:10.1f}" if args.compile else "")
                      + f" {gbs:9.0f} {row['%copy_bw']:5.1f}% {row['speedup_vs_eager']:7.2f}x {row['check']:>6}",
                      flush=True)
                if timer.cuda:
                    torch.cuda.empty_cache()

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
        print(f"\nwrote {len(rows)} rows to {args.csv}")
    failed = [r for r in rows if r["check"] != "ok"]
    if failed:
        print(f"\n{len(failed)} correctness check(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
