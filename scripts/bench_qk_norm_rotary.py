#!/usr/bin/env python3
"""Time the fused Qwen3 attention prologue (rotary's ``qk_norm_rotary``) against what a model runs without it.

    kernel-builder build kernels_src/rotary --out /tmp/kb/rotary   # and kernels_src/rmsnorm
    python scripts/bench_qk_norm_rotary.py --build-dir /tmp/kb [--json out.json]

Per shape (Qwen3-0.6B: 16 q heads, 8 kv heads, head_dim 128; tokens as batch x seq), q and k are views of
``[batch, seq, heads, head_dim]`` projections, as in ``Qwen3Attention``. Variants, each producing the rotated,
normalized q and k:

- ``eager``: transformers' math (Qwen3RMSNorm on q and k, then ``apply_rotary_pos_emb``), in torch;
- ``F.rms_norm + eager rotary``: the norms as ``torch.nn.functional.rms_norm``;
- ``ours unfused``: our ``rms_norm`` twice, then our ``apply_rotary`` (what e2e's "RMSNorm + rotary" runs);
- ``torch.compile``: the ``eager`` function compiled (``dynamic=False``);
- ``ours fused``: ``qk_norm_rotary``, one pass.

GPU time under CUDA graph replay (bench_kernels' Timer: a graph of calls cycling over buffer sets rotated
over 4x the L2, median of 11 replays / calls) and plain launches (CUDA events, median), with torch's
``copy_`` moving the same bytes (q, k, cos, sin, weights read; q, k written) as the bandwidth yardstick.
Outputs are checked against float64 (worst error in units of the dtype's eps at the output's scale).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import GRAPH_REPLAYS, Timer, copy_bandwidth_gbs, graph_calls  # noqa: E402

EPS = 1e-6
L2_ROTATE = 4 * 60e6


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _qwen3_norm(x, w, eps=EPS):
    dt = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dt)


def eager(qv, kv, qw, kw, cos, sin):
    q = _qwen3_norm(qv, qw).transpose(1, 2)
    k = _qwen3_norm(kv, kw).transpose(1, 2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s


def f_rms_eager_rotary(qv, kv, qw, kw, cos, sin):
    q = F.rms_norm(qv, (qv.shape[-1],), qw, EPS).transpose(1, 2)
    k = F.rms_norm(kv, (kv.shape[-1],), kw, EPS).transpose(1, 2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s


def ref64(qv, kv, qw, kw, cos, sin):
    def n(x, w):
        x = x.double()
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w.double()).transpose(1, 2)
    q, k = n(qv, qw), n(kv, kw)
    c, s = cos.double().unsqueeze(1), sin.double().unsqueeze(1)
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, required=True, help="holds rotary/ and rmsnorm/ builds")
    p.add_argument("--shapes", default="8x2048,1x16", help="batch x seq, comma separated")
    p.add_argument("--heads", default="16,8,128", help="q heads, kv heads, head_dim")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import kernels

    device = "cuda" if torch.cuda.is_available() else "cpu"
    timer = Timer(device)
    rot = kernels.get_local_kernel(args.build_dir / "rotary")
    rms = kernels.get_local_kernel(args.build_dir / "rmsnorm")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    qh, kh, d = (int(v) for v in args.heads.split(","))

    def ours_unfused(qv, kv, qw, kw, cos, sin):
        qn = rms.rms_norm(torch.empty_like(qv), qv, qw, EPS)
        kn = rms.rms_norm(torch.empty_like(kv), kv, kw, EPS)
        return rot.apply_rotary_pos_emb(qn.transpose(1, 2), kn.transpose(1, 2), cos, sin)

    def ours_fused(qv, kv, qw, kw, cos, sin):
        return rot.qk_norm_rotary_pos_emb(qv.transpose(1, 2), kv.transpose(1, 2), qw, kw, cos, sin, EPS)

    variants = {"eager": eager, "F.rms_norm + eager rotary": f_rms_eager_rotary, "ours unfused": ours_unfused}
    if device == "cuda" and not args.no_compile:
        variants["torch.compile"] = None  # compiled per shape below
    variants["ours fused"] = ours_fused

    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
               "dtype": args.dtype, "heads": [qh, kh, d], "points": []}
    print(f"device {results['device']}, torch {torch.__version__}, {args.dtype}, {qh}+{kh} heads x {d}")
    for shape in args.shapes.split(","):
        b, s = (int(v) for v in shape.split("x"))
        es = torch.empty((), dtype=dtype).element_size()
        moved = (2 * b * s * (qh + kh) * d + 2 * b * s * d + 2 * d) * es
        n_sets = max(2, min(64, math.ceil(L2_ROTATE / moved)))
        g = torch.Generator(device=device).manual_seed(0)
        sets = []
        for _ in range(n_sets):
            qv = torch.randn(b, s, qh, d, device=device, generator=g).mul_(3).to(dtype)
            kv = torch.randn(b, s, kh, d, device=device, generator=g).to(dtype)
            ang = torch.rand(b, s, d // 2, device=device, generator=g) * 100
            ang = torch.cat((ang, ang), -1)
            sets.append((qv, kv, (1 + 0.1 * torch.randn(d, device=device, generator=g)).to(dtype),
                         (1 + 0.1 * torch.randn(d, device=device, generator=g)).to(dtype),
                         ang.cos().to(dtype), ang.sin().to(dtype)))
        copy_plain = copy_bandwidth_gbs(timer, device, moved // 2, n_sets)
        copy_graph = copy_bandwidth_gbs(timer, device, moved // 2, n_sets, graph=timer.cuda)
        copy_us = moved / (copy_graph * 1e9) * 1e6
        ref = ref64(*sets[0])
        point = {"batch": b, "seq": s, "tokens": b * s, "MB": round(moved / 1e6, 2), "sets": n_sets,
                 "copy_same_bytes_us_graph": round(copy_us, 2), "copy_same_bytes_us_plain":
                 round(moved / (copy_plain * 1e9) * 1e6, 2), "variants": {}}
        print(f"\n{b}x{s} tokens ({moved / 1e6:.1f} MB moved, {n_sets} buffer sets): same-size copy_ "
              f"{copy_us:.2f} us (graph)")
        print(f"  {'variant':28s} {'graph us':>9s} {'plain us':>9s} {'% copy':>7s} {'fused x':>8s} "
              f"{'max err (eps of |ref|max)':>26s}")
        rows = {}
        for name, fn in variants.items():
            if name == "torch.compile":
                torch._dynamo.reset()
                fn = torch.compile(eager, dynamic=False)
            fns = [lambda fn=fn, a=a: fn(*a) for a in sets]
            with torch.no_grad():
                out = fn(*sets[0])
                scale = max(ref[0].abs().max().item(), ref[1].abs().max().item())
                err = max((o.double() - r).abs().max().item() for o, r in zip(out, ref))
                err_eps = err / (torch.finfo(dtype).eps * scale)
                plain = timer.median_us(fns, warmup=5, iters=50)
                graph = (timer.graph_median_us(fns, replays=GRAPH_REPLAYS, calls=graph_calls(len(fns), plain))
                         if timer.cuda else plain)
            rows[name] = {"us_graph": round(graph, 2), "us_plain": round(plain, 2),
                          "pct_same_size_copy": round(100 * copy_us / graph, 1), "max_err_eps": round(err_eps, 3)}
        fused = rows["ours fused"]["us_graph"]
        for name, r in rows.items():
            r["fused_speedup_graph"] = round(r["us_graph"] / fused, 2)
            r["fused_speedup_plain"] = round(r["us_plain"] / rows["ours fused"]["us_plain"], 2)
            print(f"  {name:28s} {r['us_graph']:9.2f} {r['us_plain']:9.2f} {r['pct_same_size_copy']:6.1f}% "
                  f"{r['fused_speedup_graph']:7.2f}x {r['max_err_eps']:26.3f}")
        point["variants"] = rows
        results["points"].append(point)
        del sets
        if timer.cuda:
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
