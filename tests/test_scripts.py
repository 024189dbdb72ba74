"""The benchmark and end-to-end scripts run (on the CPU here, with tiny shapes): their figures are only
meaningful on a GPU, but a script that breaks should break in CI, not during a device lease."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import KERNELS_SRC, REPO, build_project


@pytest.fixture(scope="module")
def three_builds(tmp_path_factory, built_kernels):
    root = built_kernels["activation"].parent
    if not (root / "rotary").is_dir():
        build_project(KERNELS_SRC / "rotary", root / "rotary")
    return root


def test_bench_kernels_runs_and_checks_every_op(three_builds, tmp_path):
    out = tmp_path / "bench.csv"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_kernels.py"), "--build-dir", str(three_builds),
                        "--shapes", "4x256", "--dtypes", "fp32", "--no-compile", "--iters", "3", "--warmup", "1",
                        "--copy-bytes", "1000000", "--rotate-bytes", "1000000", "--csv", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert {row["op"] for row in rows} == {"silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "silu", "gelu",
                                          "gelu_tanh", "gelu_fast", "gelu_quick", "rms_norm",
                                          "fused_add_rms_norm", "rotary"}
    assert all(row["check"] == "ok" for row in rows), rows  # outputs poisoned, recomputed, compared to eager


def test_e2e_qwen3_tiny_swaps_in_our_layers(three_builds, tmp_path):
    out = tmp_path / "e2e.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "e2e_qwen3.py"), "--build-dir", str(three_builds),
                        "--tiny", "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    ours = "ours: RMSNorm + rotary + SiLU"
    fwd = d["forwards"][ours]
    assert ".layers.RMSNorm.forward" in fwd["RMSNorm"] and "_rmsnorm_cpu_" in fwd["RMSNorm"]
    assert "_rotary_cpu_" in fwd["rotary_pos_emb"] and "_activation_cpu_" in fwd["SiLU"]
    # logits as close to float32 as eager bf16's
    assert d["logits"][ours]["rel_err_vs_fp32"] <= 1.5 * d["logits"]["eager"]["rel_err_vs_fp32"] + 1e-3
