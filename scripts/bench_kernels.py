#!/usr/bin/env python3
"""Benchmark the bundled example kernels (kernels_src/activation, kernels_src/rmsnorm, kernels_src/rotary).

Builds nothing: point it at build outputs (directories holding variant
directories such as ``torch214-cxx11-cu130-x86_64-linux/``)::

    kernel-builder build kernels_src/activation --out /tmp/kb/activation   # (and rmsnorm, rotary)
    python scripts/bench_kernels.py --build-dir /tmp/kb --csv bench.csv --png bench.png   # default grid
    python scripts/bench_kernels.py --build-dir /tmp/kb --full --dtypes bf16 --ops rms_norm   # full grid, filtered
    python scripts/bench_kernels.py --build-dir /tmp/kb --shapes 4096x8192 --no-compile --no-small

Every measured point times our op (loaded with ``kernels.get_local_kernel``)
against torch eager (the code a model runs without the kernel), ``torch.compile``
of that same eager code (``--no-compile`` skips it) and torch's ``copy_`` moving
the same bytes (the bandwidth reference), inputs rotated over enough buffer sets
(4x the L2) not to sit in L2. The main columns (``us_*``, ``GB/s_*``, ``%*``,
``vs_*``) are GPU time under CUDA graph replay: a graph holds enough calls
(cycling over the buffer sets) for about 3 ms of GPU work, and the median of 11
replays is divided by the calls (then the median of ``--rounds`` rounds, each
timing every column once in turn), so neither the host's launch path (17-26 µs
per launch on the lent VM) nor torch.compile's per-call host cost counts: that
is what a model run inside CUDA graphs, or next to compiled code, sees. Ours
allocates its output on every call (``torch.empty``, as our layers, eager and
compiled code do: under graph capture every call's output then reuses one pool
block, which can stay in L2); ``us_ours_rotated_out`` / ``vs_compile_rotated_out``
time ours writing into the rotated preallocated outputs instead. The
same timings as plain launches (median of ``--iters`` CUDA-event timings) are
beside them as ``plain_*``. Before and after timing our output is poisoned with
NaN, recomputed and checked against eager computed in float32. The copy
bandwidth (``dst.copy_(src)`` of 1 GiB, bytes read + written) is measured in
the same run and each op's bandwidth (bytes it must read and write) is given as
a percentage of it, and of a ``copy_`` moving the same bytes
(``%copy_same_size``: on the H200 a 134 MB copy reaches only 83-86 % of the
1 GiB figure).

Grids: the default is a representative grid of <= 60 points (every op in bf16
at 16x4096, 2048x4096, 4096x8192 and 8192x14336; Qwen3-0.6B's shapes; fp16 and
fp32 at the largest) that runs in a few minutes; ``--full`` is tokens {1, 16,
128, 512, 2048, 8192, 32768} x hidden {128, 1024, 2048, 4096, 5120, 8192,
14336} x dtypes: 539 points per dtype, ~40 s on an H200 without torch.compile,
about 8 minutes per dtype with it (filter it with ``--ops`` / ``--dtypes``). Small shapes (tokens <= 16) are launch-bound; the
"small" section (``--no-small`` skips it) times them as plain launches and
under CUDA graph replay, next to an empty kernel launch measured the same way
and to a floor for ops that touch memory (torch's ``copy_`` of one 16x4096 bf16
tensor, same rotation and timing).

Shapes are ``tokens x hidden``; for gated activations (``*_and_mul``) hidden is
the output width, the input is ``tokens x 2*hidden``. For ``rotary`` (vs
transformers' eager ``apply_rotary_pos_emb``) hidden is the query width: q is
``[1, hidden/head_dim heads, tokens, head_dim]`` and k has ``--rotary-gqa``
times fewer heads, both laid out as transformers makes them (the transpose of a
``[1, tokens, heads, head_dim]`` projection), cos/sin are ``[1, tokens,
head_dim]``; bytes = read q, k, cos, sin + write q_out, k_out.

At the end the targets are checked (in GPU time): >= 90 % of the copy bandwidth (and of the
same-size copy) for points moving >= 64 MB, at least as fast as torch.compile everywhere (worst ratio; the
plain-launch count beside it), small shapes within 1.2x of an empty launch. ``--csv`` writes every row;
``--png`` plots them (scripts/plot_bench.py).

Without a GPU it runs on the CPU (wall-clock timing, no compile) so the script
itself can be smoke-tested; those numbers are not meaningful benchmarks.
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
FULL_TOKENS = (1, 16, 128, 512, 2048, 8192, 32768)
FULL_HIDDEN = (128, 1024, 2048, 4096, 5120, 8192, 14336)
ALL_OPS = ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "silu", "gelu", "gelu_tanh", "gelu_fast",
           "gelu_quick", "rms_norm", "fused_add_rms_norm", "rotary")
MAIN_SHAPES = ((16, 4096), (2048, 4096), (4096, 8192), (8192, 14336))


def default_grid() -> list[tuple[str, int, int, str]]:
    """The representative grid: (op, tokens, hidden, dtype), <= 60 points."""
    pts = [(op, t, h, "bf16") for op in ALL_OPS for t, h in MAIN_SHAPES]  # 44
    # Qwen3-0.6B prefill 8 x 2048 tokens: q_norm/k_norm rows (128 wide), hidden 1024, MLP 3072.
    pts += [("rms_norm", 16384 * 16, 128, "bf16"), ("rms_norm", 16384, 1024, "bf16"),
            ("fused_add_rms_norm", 16384, 1024, "bf16"), ("silu_and_mul", 16384, 3072, "bf16"),
            ("rotary", 16384, 2048, "bf16")]  # q 16 heads x 128, k 8 heads (QWEN3_ROTARY_GQA)
    for dt in ("fp16", "fp32"):
        pts += [(op, 8192, 14336, dt) for op in ("silu_and_mul", "gelu_and_mul", "rms_norm", "fused_add_rms_norm",
                                                  "rotary")]
    return pts  # 59


def full_grid(dtypes: list[str]) -> list[tuple[str, int, int, str]]:
    return [(op, t, h, dt) for dt in dtypes for op in ALL_OPS for h in FULL_HIDDEN for t in FULL_TOKENS]


SMALL_SHAPES = ((1, 4096), (16, 4096))
# Qwen3-0.6B: 16 query heads, 8 key/value heads; the rotary point at hidden 2048 uses that ratio.
QWEN3_ROTARY_GQA = {2048: 2}
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

    def graph_median_us(self, fns: list[Callable], replays: int = 10, calls: int | None = None) -> float:
        """GPU time of one call under CUDA graph replay: one graph holds ``calls`` calls (default: every fn
        once) cycling over fns (one per buffer set); the median over ``replays`` replays, enqueued back to back
        (so the GPU runs them without gaps once the first has started), divided by ``calls``. Enough calls per
        graph (see ``graph_calls``) keep the host's replay launch hidden behind the GPU work."""
        calls = max(1, calls or len(fns))
        n = len(fns)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up (allocations, lazy init) off the capture
            for fn in fns:
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(calls):
                fns[i % n]()
        for _ in range(2):
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
        del graph
        return per_replay / calls


# Work per graph replay for the GPU-time columns: >= GRAPH_TARGET_US of estimated GPU time (at most
# GRAPH_MAX_CALLS calls, and at least one call per buffer set), so that the replay's launch on the host
# (tens of µs on the lent VM) is hidden behind the GPU work and the first replay's start gap is one of
# GRAPH_REPLAYS samples whose median is taken.
GRAPH_TARGET_US = 3000.0
GRAPH_MAX_CALLS = 1024
GRAPH_REPLAYS = 11


def graph_calls(n_sets: int, est_us: float) -> int:
    """Calls per graph for fns rotating over n_sets buffer sets whose call takes about est_us (an upper bound
    such as the plain-launch time is fine: it only makes the graph shorter)."""
    want = math.ceil(GRAPH_TARGET_US / max(est_us, 0.5))
    return max(n_sets, min(GRAPH_MAX_CALLS, want))


def copy_bandwidth_gbs(timer: Timer, device: str, nbytes: int, sets: int = 1, warmup: int = 5,
                       iters: int = 30, graph: bool = False) -> float:
    """GB/s (read + written) of moving ``nbytes``, rotated over ``sets`` buffer pairs.

    Plain launches: torch's ``dst.copy_(src)`` (a device-to-device cudaMemcpyAsync), median of ``iters``
    CUDA-event timings. ``graph``: GPU time under CUDA graph replay (a graph of many copies cycling over the
    pairs, median of GRAPH_REPLAYS replays) of the faster of ``copy_`` and an elementwise copy kernel on the
    SMs (``torch.bitwise_not`` of 32-bit words: same bytes read and written): captured in a graph, ``copy_``
    becomes a memcpy node that the H200 ran at ~2.8 TB/s for some sizes (1 GiB, 235 MB, 470 MB, 67 MB: the
    rms_norm references were 1.5x too slow) and at the plain-launch speed for others."""
    pairs = [(torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 255),
              torch.empty(nbytes, dtype=torch.uint8, device=device)) for _ in range(sets)]
    fns = [lambda s_=s_, d_=d_: d_.copy_(s_) for s_, d_ in pairs]
    us = timer.median_us(fns, warmup=warmup, iters=iters if not graph else max(3, sets))
    if graph and timer.cuda:
        memcpy_us = timer.graph_median_us(fns, replays=GRAPH_REPLAYS, calls=graph_calls(sets, us))
        words = nbytes // 4
        kern = [lambda s_=s_[: 4 * words].view(torch.int32), d_=d_[: 4 * words].view(torch.int32):
                torch.bitwise_not(s_, out=d_) for s_, d_ in pairs]
        kernel_us = timer.graph_median_us(kern, replays=GRAPH_REPLAYS, calls=graph_calls(sets, us)) * nbytes / max(
            1, 4 * words)
        us = min(memcpy_us, kernel_us)
        del kern
    del pairs, fns
    if timer.cuda:
        torch.cuda.empty_cache()
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


def _dname(dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


class Runner:
    def __init__(self, args, timer: Timer, device: str, loaded: dict, specs: dict, rotate_bytes: float,
                 copy_gbs: float):
        self.args, self.timer, self.device, self.loaded, self.specs = args, timer, device, loaded, specs
        self.rotate_bytes, self.copy_gbs = rotate_bytes, copy_gbs
        self._copy_at: dict[int, float] = {}

    def copy_gbs_at(self, moved: int, graph: bool = False) -> float:
        """What torch's ``copy_`` reaches moving the same bytes (half read, half written), buffers rotated as
        for the ops (over at least ``rotate_bytes``, 4x the L2 by default): a kernel of 134 MB cannot reach
        the bandwidth of a 1 GiB copy, whose ramp-up and tail are a smaller share (measured on the H200: a
        134 MB copy runs at 83-86 % of the 1 GiB figure). ``graph``: GPU time under CUDA graph replay (the
        main columns), else plain launches."""
        n = max(1, int(moved) // 2)
        key = (n, graph and self.timer.cuda)
        if key not in self._copy_at:
            sets = max(2, min(1024, math.ceil(self.rotate_bytes / (2 * n))))
            self._copy_at[key] = copy_bandwidth_gbs(self.timer, self.device, n, sets, self.args.warmup,
                                                    self.args.iters, graph=key[1])
        return self._copy_at[key]

    def _sets(self, spec, t, h, dtype, moved, max_sets=1024):
        n_sets = max(2, min(max_sets, math.ceil(self.rotate_bytes / max(moved, 1))))
        return [(spec.make_inputs(t, h, dtype, self.device), spec.make_outputs(t, h, dtype, self.device))
                for _ in range(n_sets)]

    def _compiled(self, spec):
        torch._dynamo.reset()  # one shape per compile: no recompile limit, no dynamic shapes
        return torch.compile(spec.eager, dynamic=False)

    def _graph_us(self, fns, plain_us: float) -> float:
        """GPU time per call under CUDA graph replay (the main column); plain time without CUDA."""
        if not self.timer.cuda:
            return plain_us
        return self.timer.graph_median_us(fns, replays=GRAPH_REPLAYS, calls=graph_calls(len(fns), plain_us))

    def _graph_rounds(self, fns: dict, plain: dict) -> tuple[dict, dict]:
        """GPU time per call of each column's calls (ours, eager, ours into rotated outputs, compile) as the
        median of ``--rounds`` rounds, each round timing every column once in turn, so that what drifts while a
        point is measured (clocks, the state the previous column left) falls on every column alike instead of
        on whichever was timed first. Returns the medians and every round's figures."""
        if not self.timer.cuda:
            return dict(plain), {k: [v] for k, v in plain.items()}
        calls = {k: graph_calls(len(f), plain[k]) for k, f in fns.items()}
        rounds: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(max(1, self.args.rounds)):
            for k, f in fns.items():
                rounds[k].append(self.timer.graph_median_us(f, replays=GRAPH_REPLAYS, calls=calls[k]))
        return {k: statistics.median(v) for k, v in rounds.items()}, rounds

    def point(self, name, t, h, dtype, gqa=None):
        """One grid point: ours, eager, compile and the same-size copy_, in GPU time under CUDA graph replay
        (main columns) and as plain launches (``plain_*``). Returns a row dict or None (skipped)."""
        spec = self.specs[name]
        kernel = self.loaded[spec.kernel]
        ROTARY["gqa"] = gqa or self.args.rotary_gqa
        if spec.kernel == "rotary" and h % ROTARY["head_dim"]:
            return None
        es = torch.empty((), dtype=dtype).element_size()
        moved = spec.bytes_moved(t, h, es)
        sets = self._sets(spec, t, h, dtype, moved)
        ok = check(spec, kernel, sets[0][1], sets[0][0], dtype)
        # ours as a model's layer runs it: the output allocated per call (torch.empty, as eager and compiled
        # code allocate theirs; under graph capture every call's output then takes the same pool block), and
        # into the rotated preallocated outputs (the ``*_rotated_out`` columns: outputs never L2-resident)
        ours = [lambda ins=ins: spec.call(kernel, spec.make_outputs(t, h, dtype, self.device), ins)
                for ins, _ in sets]
        ours_rot = [lambda ins=ins, outs=outs: spec.call(kernel, outs, ins) for ins, outs in sets]
        eager = [lambda ins=ins: spec.eager(*ins) for ins, _ in sets]
        it, wu = self.args.iters, self.args.warmup
        fns = {"ours": ours, "eager": eager, "ours_rot": ours_rot}
        if self.args.compile:
            compiled = self._compiled(spec)
            fns["compile"] = [lambda ins=ins: compiled(*ins) for ins, _ in sets]
        plain = {k: self.timer.median_us(f, wu, it) for k, f in fns.items()}
        gpu, rounds = self._graph_rounds(fns, plain)
        del fns
        # poisoned and recomputed again after the timing (graph replays included)
        ok = ok and check(spec, kernel, sets[-1][1], sets[-1][0], dtype)
        del sets, ours, ours_rot, eager
        if self.timer.cuda:
            torch.cuda.empty_cache()
        same, same_plain = self.copy_gbs_at(moved, graph=True), self.copy_gbs_at(moved)
        gpu["copy"] = moved / (same * 1e9) * 1e6
        plain["copy"] = moved / (same_plain * 1e9) * 1e6

        def gbs(us):
            return round(moved / (us * 1e-6) / 1e9, 1)

        g = gbs(gpu["ours"])
        row = {
            "op": name, "shape": f"{t}x{h}", "tokens": t, "hidden": h, "dtype": _dname(dtype),
            "MB": round(moved / 1e6, 2),
            "timing": "cuda_graph" if self.timer.cuda else "cpu_plain",
            "us_ours": round(gpu["ours"], 2), "us_eager": round(gpu["eager"], 2),
            "us_compile": round(gpu["compile"], 2) if "compile" in gpu else "",
            "us_copy_same_size": round(gpu["copy"], 2),
            "GB/s_ours": g, "%copy_bw": round(100 * g / self.copy_gbs, 1),
            "%copy_same_size": round(100 * gpu["copy"] / gpu["ours"], 1),
            "GB/s_eager": gbs(gpu["eager"]),
            "GB/s_compile": gbs(gpu["compile"]) if "compile" in gpu else "",
            "vs_eager": round(gpu["eager"] / gpu["ours"], 2),
            "vs_compile": round(gpu["compile"] / gpu["ours"], 2) if "compile" in gpu else "",
            "plain_us_ours": round(plain["ours"], 2), "plain_us_eager": round(plain["eager"], 2),
            "plain_us_compile": round(plain["compile"], 2) if "compile" in plain else "",
            "plain_us_copy_same_size": round(plain["copy"], 2),
            "plain_%copy_same_size": round(100 * plain["copy"] / plain["ours"], 1),
            "plain_vs_eager": round(plain["eager"] / plain["ours"], 2),
            "plain_vs_compile": round(plain["compile"] / plain["ours"], 2) if "compile" in plain else "",
            "us_ours_rotated_out": round(gpu["ours_rot"], 2),
            "vs_compile_rotated_out": round(gpu["compile"] / gpu["ours_rot"], 2) if "compile" in gpu else "",
            "plain_us_ours_rotated_out": round(plain["ours_rot"], 2),
            "rounds_us_ours": " ".join(f"{v:.2f}" for v in rounds["ours"]),
            "rounds_us_compile": " ".join(f"{v:.2f}" for v in rounds.get("compile", [])),
            "check": "ok" if ok else "FAIL",
        }
        return row

    def small(self, name, t, h, dtype, empty_plain, empty_graph, floor_graph=float("nan")):
        """Launch-bound shapes: plain launches and CUDA graph replay, vs an empty launch."""
        spec = self.specs[name]
        kernel = self.loaded[spec.kernel]
        ROTARY["gqa"] = self.args.rotary_gqa
        if spec.kernel == "rotary" and h % ROTARY["head_dim"]:
            return None
        es = torch.empty((), dtype=dtype).element_size()
        moved = spec.bytes_moved(t, h, es)
        sets = self._sets(spec, t, h, dtype, moved, max_sets=64)
        ok = check(spec, kernel, sets[0][1], sets[0][0], dtype)
        ours = [lambda ins=ins, outs=outs: spec.call(kernel, outs, ins) for ins, outs in sets]
        eager = [lambda ins=ins: spec.eager(*ins) for ins, _ in sets]
        it, wu = self.args.iters, self.args.warmup
        row = {"op": name, "shape": f"{t}x{h}", "tokens": t, "hidden": h, "dtype": _dname(dtype),
               "MB": round(moved / 1e6, 3),
               "us_ours": round(self.timer.median_us(ours, wu, it), 2),
               "us_eager": round(self.timer.median_us(eager, wu, it), 2),
               "us_empty": round(empty_plain, 2)}
        if self.timer.cuda:
            row["graph_us_ours"] = round(self._graph_us(ours, row["us_ours"]), 2)
            row["graph_us_eager"] = round(self._graph_us(eager, row["us_eager"]), 2)
            row["graph_us_empty"] = round(empty_graph, 2)
            row["graph_us_copy_floor"] = round(floor_graph, 2)
        row["vs_empty"] = round(row["us_ours"] / empty_plain, 2)
        if "graph_us_ours" in row:
            row["graph_vs_empty"] = round(row["graph_us_ours"] / empty_graph, 2)
            row["graph_vs_copy_floor"] = round(row["graph_us_ours"] / floor_graph, 2)
        row["check"] = "ok" if ok and check(spec, kernel, sets[-1][1], sets[-1][0], dtype) else "FAIL"
        return row


def copy_floor_us(timer: Timer, device: str, iters: int, shape=(16, 4096), sets: int = 64) -> tuple[float, float]:
    """The floor for an op that must touch memory: torch's ``dst.copy_(src)`` of one bf16 tensor of ``shape``
    (one small elementwise kernel that reads and writes it), rotated over ``sets`` buffer pairs, as plain launches
    and in a CUDA graph, timed like our ops."""
    if not timer.cuda:
        return float("nan"), float("nan")
    pairs = [(torch.randn(*shape, dtype=torch.bfloat16, device=device), torch.empty(*shape, dtype=torch.bfloat16,
                                                                                    device=device))
             for _ in range(sets)]
    fns = [lambda s=s_, d=d_: d.copy_(s) for s_, d_ in pairs]
    plain = timer.median_us(fns, 20, iters)
    return plain, timer.graph_median_us(fns, replays=GRAPH_REPLAYS, calls=graph_calls(len(fns), plain))


def empty_launch_us(timer: Timer, iters: int) -> tuple[float, float]:
    """An empty kernel launch (torch.cuda._sleep(0): one kernel, no work) as plain launches and in a graph."""
    if not timer.cuda:
        return float("nan"), float("nan")
    fns = [lambda: torch.cuda._sleep(0)] * 16
    plain = timer.median_us(fns, 20, iters)
    return plain, timer.graph_median_us(fns, replays=GRAPH_REPLAYS, calls=graph_calls(len(fns), plain))


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else str(v).rjust(int(spec.split(".")[0]) if spec[0].isdigit() else 0)


def print_header(compile_: bool, cuda: bool = True):
    main = "GPU time under CUDA graph replay" if cuda else "CPU wall clock"
    print(f"µs ours/eager/{'compile/' if compile_ else ''}copy: {main} (copy: a copy_ moving the same bytes); "
          "GB/s, %, ratios from them; ours allocates its output per call as eager and compiled code do"
          + ("; rot-out: compile / ours writing into rotated preallocated outputs" if compile_ else "")
          + "; after the last '|': plain launches")
    print(f"{'op':<19} {'shape':>12} {'dtype':>5} {'MB':>9} | {'µs ours':>8} {'eager':>8} "
          + (f"{'compile':>8} " if compile_ else "") + f"{'copy':>8} | {'GB/s':>6} {'%copy':>6} {'%same':>6} "
          + f"{'/eager':>7} " + (f"{'/compile':>8} {'rot-out':>8} " if compile_ else "") + f"| {'µs ours':>8} "
          + (f"{'compile':>8} {'/compile':>8} " if compile_ else f"{'eager':>8} ") + "check")


def print_row(row, compile_: bool):
    print(f"{row['op']:<19} {row['shape']:>12} {row['dtype']:>5} {row['MB']:9.1f} | {row['us_ours']:8.1f} "
          f"{row['us_eager']:8.1f} " + (f"{_fmt(row['us_compile'], '8.1f')} " if compile_ else "")
          + f"{row['us_copy_same_size']:8.1f} | {row['GB/s_ours']:6.0f} {row['%copy_bw']:5.1f}% "
          + f"{row['%copy_same_size']:5.1f}% {row['vs_eager']:6.2f}x "
          + (f"{_fmt(row['vs_compile'], '7.2f')}x {_fmt(row['vs_compile_rotated_out'], '7.2f')}x " if compile_ else "")
          + f"| {row['plain_us_ours']:8.1f} "
          + (f"{_fmt(row['plain_us_compile'], '8.1f')} {_fmt(row['plain_vs_compile'], '7.2f')}x " if compile_
             else f"{row['plain_us_eager']:8.1f} ")
          + f"{row['check']:>5}", flush=True)


def summarize(rows, small_rows, copy_gbs, compile_: bool) -> list[str]:
    lines = ["", "targets (GPU time under CUDA graph replay, except where marked):"]
    big = [r for r in rows if r["MB"] >= 64]
    if big:
        miss = [r for r in big if r["%copy_bw"] < 90]
        worst = min(big, key=lambda r: r["%copy_bw"])
        lines.append(f"  >= 90% of copy bandwidth ({copy_gbs:.0f} GB/s) at >= 64 MB: {len(big) - len(miss)}/{len(big)} "
                     f"points; lowest {worst['%copy_bw']}% ({worst['op']} {worst['shape']} {worst['dtype']})")
        for r in miss:
            lines.append(f"    below: {r['op']} {r['shape']} {r['dtype']}: {r['%copy_bw']}% "
                         f"({r['%copy_same_size']}% of a copy_ moving the same bytes)")
        same_miss = [r for r in big if r["%copy_same_size"] < 90]
        lines.append(f"  >= 90% of a copy_ moving the same bytes, at >= 64 MB: {len(big) - len(same_miss)}/{len(big)} points")
    if compile_:
        cmp_rows = [r for r in rows if r.get("vs_compile") not in ("", None)]
        if cmp_rows:
            worst = min(cmp_rows, key=lambda r: r["vs_compile"])
            slower = [r for r in cmp_rows if r["vs_compile"] < 1.0]
            lines.append(f"  >= torch.compile: {len(cmp_rows) - len(slower)}/{len(cmp_rows)} points; worst ratio "
                         f"{worst['vs_compile']}x ({worst['op']} {worst['shape']} {worst['dtype']})")
            for r in slower:
                lines.append(f"    slower: {r['op']} {r['shape']} {r['dtype']}: {r['vs_compile']}x "
                             f"({r['us_ours']} vs {r['us_compile']} µs; into rotated outputs "
                             f"{r['vs_compile_rotated_out']}x; plain launches {r['plain_vs_compile']}x)")
            rot = [r for r in cmp_rows if r.get("vs_compile_rotated_out") not in ("", None)]
            if rot:
                n = sum(r["vs_compile_rotated_out"] >= 1.0 for r in rot)
                lines.append(f"  >= torch.compile with ours writing into rotated preallocated outputs: {n}/{len(rot)}")
            plain = [r for r in cmp_rows if r.get("plain_vs_compile") not in ("", None)]
            if plain:
                n = sum(r["plain_vs_compile"] >= 1.0 for r in plain)
                lines.append(f"  >= torch.compile in plain launches (host launch cost included): {n}/{len(plain)}")
    if small_rows:
        w = max(small_rows, key=lambda r: r["vs_empty"])
        n = sum(r["vs_empty"] <= 1.2 for r in small_rows)
        lines.append(f"  small shapes <= 1.2x an empty launch (plain launches): {n}/{len(small_rows)}; worst "
                     f"{w['vs_empty']}x ({w['op']} {w['shape']})")
        g = [r for r in small_rows if "graph_vs_empty" in r]
        if g:
            w = max(g, key=lambda r: r["graph_vs_empty"])
            n = sum(r["graph_vs_empty"] <= 1.2 for r in g)
            lines.append(f"  small shapes <= 1.2x an empty launch (CUDA graph replay): {n}/{len(g)}; worst "
                         f"{w['graph_vs_empty']}x ({w['op']} {w['shape']})")
            if "graph_vs_copy_floor" in w:
                n = sum(r["graph_vs_copy_floor"] <= 1.2 for r in g)
                w = max(g, key=lambda r: r["graph_vs_copy_floor"])
                lines.append(f"  small shapes <= 1.2x the copy_ floor (CUDA graph replay): {n}/{len(g)}; worst "
                             f"{w['graph_vs_copy_floor']}x ({w['op']} {w['shape']})")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", action="append", required=True,
                   help="NAME=PATH (NAME: activation, rmsnorm, rotary) or a directory with any of "
                        "activation/, rmsnorm/, rotary/; repeatable")
    p.add_argument("--full", action="store_true", help="the full grid (tokens x hidden x dtypes; filter with "
                                                        "--ops/--dtypes)")
    p.add_argument("--dtypes", default=None, help="comma list of bf16, fp16, fp32 (filters the default grid; "
                                                  "--full/--shapes default: bf16,fp16,fp32 / bf16)")
    p.add_argument("--shapes", default=None, help="comma list of TOKENSxHIDDEN instead of the default grid")
    p.add_argument("--ops", default=None, help="comma list of op names to run (default: all)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--no-small", dest="small", action="store_false",
                   help="skip the small-shape section (plain launches + CUDA graph replay)")
    p.add_argument("--iters", type=int, default=200, help="timed runs per measurement (default 200)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3,
                   help="GPU-time columns: median of this many rounds, each timing ours, eager, ours into rotated "
                        "outputs and compile once in turn (default 3)")
    p.add_argument("--rotate-bytes", type=float, default=None,
                   help="bytes of distinct buffers to rotate over (default 4x the L2 size, at least 2 sets)")
    p.add_argument("--copy-bytes", type=int, default=1 << 30, help="tensor size for the copy-bandwidth measurement")
    p.add_argument("--rotary-head-dim", type=int, default=128, help="rotary: head_dim (default 128)")
    p.add_argument("--rotary-gqa", type=int, default=4, help="rotary: q heads per k head (default 4)")
    p.add_argument("--csv", type=Path, default=None, help="write the rows to this CSV file (small shapes: "
                                                          "NAME-small.csv beside it)")
    p.add_argument("--png", type=Path, default=None, help="plot the rows (scripts/plot_bench.py, needs matplotlib)")
    p.add_argument("--device", default=None, help="default cuda if available, else cpu (smoke test only)")
    args = p.parse_args(argv)

    import kernels

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        print("warning: no CUDA device; timing on the CPU (a smoke test of this script, not a benchmark)",
              file=sys.stderr)
        args.copy_bytes = min(args.copy_bytes, 64 << 20)
        args.iters = min(args.iters, 10)
        args.warmup = min(args.warmup, 2)
        args.compile = False
    timer = Timer(device)
    ROTARY.update(head_dim=args.rotary_head_dim, gqa=args.rotary_gqa)
    wanted = set(args.ops.split(",")) if args.ops else None

    build_dirs = parse_build_dirs(args.build_dir)
    loaded = {name: kernels.get_local_kernel(path) for name, path in build_dirs.items()}
    all_specs = _act_specs() + _norm_specs() + (_rotary_specs() if "rotary" in loaded else [])
    specs = {s.name: s for s in all_specs if s.kernel in loaded and (wanted is None or s.name in wanted)}
    if not specs:
        raise SystemExit("nothing to run (no kernel loaded or --ops matched nothing)")

    if args.full:
        dts = (args.dtypes or "bf16,fp16,fp32").split(",")
        grid = [(o, t, h, d, None) for o, t, h, d in full_grid(dts)]
    elif args.shapes:
        dts = (args.dtypes or "bf16").split(",")
        grid = [(o, t, h, d, None) for d in dts for t, h in parse_shapes(args.shapes) for o in ALL_OPS]
    else:
        dts = args.dtypes.split(",") if args.dtypes else None
        grid = [(o, t, h, d, QWEN3_ROTARY_GQA.get(h) if o == "rotary" and t == 16384 else None)
                for o, t, h, d in default_grid() if dts is None or d in dts]
    grid = [g for g in grid if g[0] in specs]

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        l2 = int(getattr(props, "L2_cache_size", 50 << 20) or (50 << 20))
        dev_name = f"{props.name} ({props.multi_processor_count} SMs, {l2 >> 20} MiB L2)"
    else:
        l2 = 32 << 20
        dev_name = "cpu"
    rotate_bytes = args.rotate_bytes or 4 * l2
    copy_plain = copy_bandwidth_gbs(timer, device, args.copy_bytes)
    copy_gbs = copy_bandwidth_gbs(timer, device, args.copy_bytes, graph=True) if timer.cuda else copy_plain
    mode = (f"GPU time under CUDA graph replay (main columns: median of {GRAPH_REPLAYS} replays of a graph of "
            f"many calls) and plain launches (CUDA events, median of {args.iters})" if timer.cuda
            else f"CPU wall clock, median of {args.iters}")
    print(f"device: {dev_name}; torch {torch.__version__}; timing: {mode}")
    print(f"copy bandwidth: {copy_gbs:.0f} GB/s in a CUDA graph, {copy_plain:.0f} GB/s plain (copy_ of "
          f"{args.copy_bytes / 2**20:.0f} MiB, read + write)")
    for name, k in loaded.items():
        print(f"{name}: {k.__name__} from {build_dirs[name]}")
    print(f"{len(grid)} points" + (" + torch.compile" if args.compile else ""))
    print()
    runner = Runner(args, timer, device, loaded, specs, rotate_bytes, copy_gbs)
    t_start = time.perf_counter()

    rows = []
    csv_file = csv_writer = None
    if args.csv:  # written row by row: a run stopped early keeps what it measured
        csv_file = open(args.csv, "w", newline="")
    print_header(args.compile, timer.cuda)
    for name, t, h, dt, gqa in grid:
        row = runner.point(name, t, h, DTYPES[dt], gqa)
        if row is None:
            continue
        rows.append(row)
        print_row(row, args.compile)
        if csv_file:
            if csv_writer is None:
                csv_writer = csv.DictWriter(csv_file, fieldnames=list(row.keys()))
                csv_writer.writeheader()
            csv_writer.writerow(row)
            csv_file.flush()

    small_rows = []
    if args.small and not args.full:
        empty_plain, empty_graph = empty_launch_us(timer, args.iters)
        floor_plain, floor_graph = copy_floor_us(timer, device, args.iters)
        print(f"\nsmall shapes (launch-bound), bf16; empty kernel launch (torch.cuda._sleep(0)): "
              f"{empty_plain:.2f} µs plain, {empty_graph:.2f} µs per kernel in a CUDA graph")
        print(f"floor for an op that touches memory (copy_ of one 16x4096 bf16 tensor, 64 buffer sets): "
              f"{floor_plain:.2f} µs plain, {floor_graph:.2f} µs per kernel in a CUDA graph "
              f"({floor_graph / empty_graph:.2f}x the empty kernel)")
        print(f"{'op':<19} {'shape':>8} {'µs ours':>8} {'eager':>8} "
              + f"{'/empty':>7} | graph: {'ours':>6} {'eager':>6} {'/empty':>7} {'/copy':>6} check")
        for t, h in SMALL_SHAPES:
            for name in specs:
                if dts is not None and "bf16" not in dts:
                    continue
                row = runner.small(name, t, h, torch.bfloat16, empty_plain, empty_graph, floor_graph)
                if row is None:
                    continue
                small_rows.append(row)
                print(f"{name:<19} {row['shape']:>8} {row['us_ours']:8.2f} {row['us_eager']:8.2f} "
                      + f"{row['vs_empty']:6.2f}x | "
                      + (f"{row.get('graph_us_ours', float('nan')):12.2f} {row.get('graph_us_eager', float('nan')):6.2f} "
                         f"{row.get('graph_vs_empty', float('nan')):6.2f}x "
                         f"{row.get('graph_vs_copy_floor', float('nan')):5.2f}x " if timer.cuda else "")
                      + row["check"], flush=True)

    lines = summarize(rows, small_rows, copy_gbs, args.compile)
    lines.append(f"  wall time: {time.perf_counter() - t_start:.0f} s for {len(rows)} points + {len(small_rows)} small")
    print("\n".join(lines))

    if args.csv:
        csv_file.close()
        print(f"wrote {len(rows)} rows to {args.csv}")
        if small_rows:
            small_csv = args.csv.with_name(args.csv.stem + "-small.csv")
            keys = list(dict.fromkeys(k for r in small_rows for k in r))
            with open(small_csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(small_rows)
            print(f"wrote {len(small_rows)} rows to {small_csv}")
    if args.png and rows:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        try:
            import plot_bench
            plot_bench.plot(rows, args.png, title=f"{dev_name}, copy {copy_gbs:.0f} GB/s")
            print(f"wrote {args.png}")
        except ImportError as e:  # matplotlib missing: the CSV has everything
            print(f"no plot: {e}", file=sys.stderr)
    failed = [r for r in rows + small_rows if r["check"] != "ok"]
    if failed:
        print(f"\n{len(failed)} correctness check(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
