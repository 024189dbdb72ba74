#!/usr/bin/env python3
"""Plot scripts/bench_kernels.py results: achieved bandwidth of ours, eager, torch.compile and a same-size copy_.

    python scripts/plot_bench.py bench.csv bench.png [--title TEXT]
    python scripts/plot_bench.py bench.csv --markdown      # README tables (GPU time and ratios per point)

One panel per (shape, dtype) with at least one point, ops on the x axis, bars of
% of the copy bandwidth measured in the same run (GB/s in the CSV / the run's
copy bandwidth, recovered from GB/s_ours and %copy_bw), from the CSV's main
columns: GPU time under CUDA graph replay when its ``timing`` column says
``cuda_graph`` (older CSVs, without that column: plain launches). The same-size
copy_ (``us_copy_same_size``, where present) is drawn as an outline. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot(rows: list[dict], png: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # copy bandwidth of the run: GB/s_ours / (%copy_bw / 100)
    copy = next((_num(r["GB/s_ours"]) * 100 / _num(r["%copy_bw"]) for r in rows if _num(r.get("%copy_bw"))), None)
    panels: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        panels.setdefault((r["shape"], r["dtype"]), []).append(r)
    keys = sorted(panels, key=lambda k: (k[1] != "bf16", k[1], float(panels[k][0]["MB"])))
    ncols = 2
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 2.8 * nrows), squeeze=False)
    series = [("GB/s_ours", "ours", "tab:green"), ("GB/s_eager", "eager", "tab:gray"),
              ("GB/s_compile", "torch.compile", "tab:blue")]
    has_copy = any(_num(r.get("us_copy_same_size")) for r in rows)
    timing = {r.get("timing") for r in rows}
    timing_txt = ("GPU time, CUDA graph replay" if timing == {"cuda_graph"}
                  else "plain launches" if timing == {None} else "/".join(sorted(str(t) for t in timing)))
    for ax, key in zip(axes.flat, keys):
        pts = panels[key]
        width = 0.8 / len(series)
        for j, (col, label, color) in enumerate(series):
            vals = [(_num(r.get(col)) or 0.0) * 100 / copy for r in pts]
            ax.bar([i + (j - 1) * width for i in range(len(pts))], vals, width, label=label, color=color)
        if has_copy:  # the same bytes moved by copy_: what a memory-bound op can reach at this size
            vals = [(_num(r["MB"]) * 1e3 / _num(r["us_copy_same_size"]) if _num(r.get("us_copy_same_size")) else 0.0)
                    * 100 / copy for r in pts]
            ax.bar(range(len(pts)), vals, 0.8 + width / 2, fill=False, edgecolor="black", lw=0.6,
                   label="copy_, same bytes")
        ax.axhline(90, color="red", lw=0.8, ls="--")
        ax.set_xticks(range(len(pts)))
        ax.set_xticklabels([r["op"].replace("_and_mul", "&mul").replace("fused_add_", "add+") for r in pts],
                           rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 110)
        ax.set_ylabel("% copy BW", fontsize=8)
        ax.set_title(f"{key[0]} {key[1]} ({pts[0]['MB']} MB)", fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}  ({timing_txt}; dashed: 90% target)" if title
                 else f"{timing_txt}; dashed: 90% of copy bandwidth", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


MD_COLUMNS = [  # (header, CSV column, format)
    ("op", "op", "s"), ("shape", "shape", "s"), ("dtype", "dtype", "s"), ("MB", "MB", ".1f"),
    ("µs ours", "us_ours", ".2f"), ("µs compile", "us_compile", ".2f"), ("µs eager", "us_eager", ".2f"),
    ("µs copy_ same bytes", "us_copy_same_size", ".2f"), ("% same-size copy", "%copy_same_size", ".1f"),
    ("vs eager", "vs_eager", ".2f"), ("vs compile", "vs_compile", ".2f"),
    ("vs compile, rotated out", "vs_compile_rotated_out", ".2f"), ("plain launches vs compile", "plain_vs_compile", ".2f"),
]


def markdown(rows: list[dict]) -> str:
    """README tables: one per group (bf16 main shapes, Qwen3-0.6B prefill shapes, fp16/fp32), every point with
    its GPU time and ratios; ratios get an x, percentages a %."""
    groups = {"bf16": [], "qwen3": [], "fp16/fp32": []}
    for r in rows:
        if r["dtype"] != "bf16":
            groups["fp16/fp32"].append(r)
        elif int(r["tokens"]) >= 16384 or int(r["hidden"]) in (128, 1024, 2048, 3072):
            groups["qwen3"].append(r)
        else:
            groups["bf16"].append(r)
    out = []
    for name, pts in groups.items():
        if not pts:
            continue
        out.append(f"{name}:\n")
        out.append("| " + " | ".join(h for h, _, _ in MD_COLUMNS) + " |")
        out.append("|" + "---|" * len(MD_COLUMNS))
        for r in pts:
            cells = []
            for h, col, fmt in MD_COLUMNS:
                v = r.get(col, "")
                if fmt != "s" and _num(v) is not None:
                    v = format(_num(v), fmt) + ("x" if h.startswith(("vs", "plain")) else "%" if h.startswith("%") else "")
                if col == "vs_compile" and _num(r.get(col)) is not None:
                    v = f"**{v}**"
                cells.append(str(v))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path)
    p.add_argument("png", type=Path, nargs="?")
    p.add_argument("--title", default="")
    p.add_argument("--markdown", action="store_true", help="print README tables instead of plotting")
    args = p.parse_args(argv)
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if args.markdown:
        print(markdown(rows))
        return 0
    if args.png is None:
        p.error("png (or --markdown)")
    plot(rows, args.png, args.title)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
