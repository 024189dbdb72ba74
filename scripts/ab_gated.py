#!/usr/bin/env python3
"""A/B of the gated activation kernels (silu_and_mul, gelu_and_mul, gelu_tanh_and_mul) between two builds of
kernels_src/activation: GPU time under CUDA graph replay and a hash of every output, for a bitwise comparison.

One build per process (two builds of one project register the same op names), so run it once per build and
compare the JSON files::

    python scripts/ab_gated.py --build-dir /tmp/build_old/activation --json old.json
    python scripts/ab_gated.py --build-dir /tmp/build/activation --json new.json
    python scripts/ab_gated.py --compare old.json new.json [old2.json new2.json ...]

Timing: the inputs rotate over 64 buffer sets (small shapes, as bench_kernels.py's small section) or 2
(8192x14336: each set is larger than the L2); bench_kernels.py's graph timer: a graph holds ~3 ms of GPU work, the median
of 21 replays is divided by the calls. Outputs: random inputs drawn on the device from a fixed seed (so both
builds see the same bytes), outputs poisoned with NaN before the call, then hashed (sha256 of the raw bytes).
Without CUDA the timing is the CPU wall clock (a smoke test of this script only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import Timer, graph_calls  # noqa: E402

OPS = ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# (tokens, hidden, dtype) timed: the launch-bound shapes of the regression (one chunk per row at 4096, four
# at 14336) and the large shape whose speed the tile renumbering bought.
TIMED = [(1, 4096, "bf16"), (4, 4096, "bf16"), (16, 4096, "bf16"), (16, 14336, "bf16"), (8192, 14336, "bf16")]
# Extra shapes for the bitwise comparison only: odd widths (narrow packs, one element), several chunks with a
# partial last one, many short rows (several rows per block), every dtype.
CHECKED = TIMED + [(3, 7, "bf16"), (5, 2049, "fp16"), (37, 14336, "fp32"), (300, 64, "bf16"), (2, 20000, "fp32"),
                   (1000, 5000, "fp16"), (8192, 14336, "fp16"), (4096, 8192, "fp32"), (70001, 40, "bf16")]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()).hexdigest()


def _inputs(tokens, hidden, dtype, device, seed, strided=False):
    g = torch.Generator(device=device).manual_seed(seed)  # same seed, shape and device: the same bytes
    width = 2 * hidden + (8 if strided else 0)
    x = (torch.randn(tokens, width, generator=g, device=device) * 3).to(dtype)
    return x[:, : 2 * hidden] if strided else x


def graph_us(fns, device, replays=21):
    """bench_kernels' graph timer, sized from a plain-launch estimate (the CPU clock without CUDA)."""
    timer = Timer(device)
    plain = timer.median_us(fns, warmup=len(fns), iters=max(10, len(fns)))
    if not timer.cuda:
        return plain
    return timer.graph_median_us(fns, replays=replays, calls=graph_calls(len(fns), plain))


def run(build_dir: Path, device: str, rounds: int) -> dict:
    import kernels

    k = kernels.get_local_kernel(build_dir)
    res = {"build": str(build_dir), "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
           "timing_us": {}, "hashes": {}}
    for op in OPS:
        fn = getattr(k.ops, op)
        for tokens, hidden, dt in CHECKED:
            for strided in (False, True):
                if strided and (tokens, hidden) not in ((16, 4096), (37, 14336), (5, 2049)):
                    continue
                x = _inputs(tokens, hidden, DTYPES[dt], device, seed=tokens * 7919 + hidden, strided=strided)
                out = torch.full((tokens, hidden), float("nan"), dtype=DTYPES[dt], device=device)
                fn(out, x)
                res["hashes"][f"{op} {tokens}x{hidden} {dt}{' strided' if strided else ''}"] = _digest(out)
                del x, out
        for tokens, hidden, dt in TIMED:
            n_sets = 2 if tokens * hidden >= 1 << 24 else 64
            sets = [(_inputs(tokens, hidden, DTYPES[dt], device, seed=s),
                     torch.empty(tokens, hidden, dtype=DTYPES[dt], device=device)) for s in range(n_sets)]
            fns = [lambda x=x, o=o: fn(o, x) for x, o in sets]
            res["timing_us"][f"{op} {tokens}x{hidden} {dt}"] = [round(graph_us(fns, device), 3)
                                                                for _ in range(rounds)]
            del sets, fns
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return res


def compare(paths: list[Path]) -> int:
    runs = [json.loads(p.read_text()) for p in paths]
    ref = runs[0]["hashes"]
    same = all(r["hashes"] == ref for r in runs[1:])
    diff = sorted({key for r in runs[1:] for key in ref if r["hashes"].get(key) != ref[key]})
    print(f"bitwise: {len(ref)} outputs per build, " + ("all identical across " + ", ".join(p.name for p in paths)
                                                         if same else f"DIFFER: {diff}"))
    print(f"{'op shape dtype':<36} " + " ".join(f"{p.stem:>16}" for p in paths) + "   (µs, GPU time, graph replay;"
          " each: median of the rounds)")
    for key in runs[0]["timing_us"]:
        vals = [statistics.median(r["timing_us"][key]) for r in runs]
        spread = [f"{min(r['timing_us'][key]):.2f}-{max(r['timing_us'][key]):.2f}" for r in runs]
        print(f"{key:<36} " + " ".join(f"{v:16.3f}" for v in vals) + "   rounds: " + " | ".join(spread))
    return 0 if same else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, help="a build of kernels_src/activation (holding variant dirs)")
    p.add_argument("--json", type=Path, help="write timings and output hashes here")
    p.add_argument("--rounds", type=int, default=3, help="timings per shape (each a graph's median)")
    p.add_argument("--compare", type=Path, nargs="+", help="compare JSON files written by earlier runs")
    args = p.parse_args(argv)
    if args.compare:
        return compare(args.compare)
    if not args.build_dir or not args.json:
        p.error("--build-dir and --json (or --compare)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = run(args.build_dir, device, args.rounds)
    args.json.write_text(json.dumps(res, indent=1))
    for key, v in res["timing_us"].items():
        print(f"{key:<36} {' '.join(f'{x:8.3f}' for x in v)} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
