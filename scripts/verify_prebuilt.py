#!/usr/bin/env python3
"""Load a kernels_src/activation build made elsewhere (e.g. in a container on a CPU-only host) with the
real `kernels` loader on this machine, and check every op against a float64 reference on the GPU.

    python scripts/verify_prebuilt.py BUILD_DIR            # BUILD_DIR holds variant directories

Both loader paths are used: `get_local_kernel(BUILD_DIR)` and `LOCAL_KERNELS=org/name=BUILD_DIR` +
`get_kernel(org/name, version=1)`. Prints which variant the loader chose, one line per op × dtype, and
exits 1 on any mismatch.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

REFERENCES = {
    "silu": lambda x: x * (1 / (1 + (-x).exp())),
    "gelu": lambda x: 0.5 * x * (1 + (x / math.sqrt(2)).erf()),
    "gelu_tanh": lambda x: 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh()),
    "gelu_fast": lambda x: 0.5 * x * (1 + (x * 0.7978845608 * (1 + 0.044715 * x * x)).tanh()),
    "gelu_quick": lambda x: x * (1 / (1 + (-1.702 * x).exp())),
}
GATED = {"silu_and_mul": "silu", "gelu_and_mul": "gelu", "gelu_tanh_and_mul": "gelu_tanh"}
TOL = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def check(kernel, device: str) -> int:
    import torch

    failures = 0
    gen = torch.Generator(device="cpu").manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for shape in ((7, 4096), (128, 14336), (3, 5, 1000)):
            x = (torch.randn(*shape, generator=gen) * 3).to(device=device, dtype=dtype)
            x64 = x.double()
            d = shape[-1] // 2
            for name in list(REFERENCES) + list(GATED):
                if name in GATED:
                    ref = REFERENCES[GATED[name]](x64[..., :d]) * x64[..., d:]
                    out = torch.full((*shape[:-1], d), float("nan"), device=device, dtype=dtype)
                else:
                    ref = REFERENCES[name](x64)
                    out = torch.full(shape, float("nan"), device=device, dtype=dtype)
                getattr(kernel, name)(out, x)
                err = ((out.double() - ref).abs() / (ref.abs() + 1)).max().item()
                ok = err <= TOL[str(dtype).split(".")[1]] and not out.isnan().any().item()
                failures += not ok
                if not ok or shape == (128, 14336):
                    print(f"  {'ok  ' if ok else 'FAIL'} {name:<18} {str(dtype):<15} {str(shape):<14} max rel err {err:.2e}")
    return failures


def main() -> int:
    build = Path(sys.argv[1]).resolve()
    import torch
    import kernels

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, "
          f"kernels {kernels.__version__}; variants in {build}: {', '.join(sorted(p.name for p in build.iterdir()))}")
    k = kernels.get_local_kernel(build)
    print(f"get_local_kernel -> {k.__name__} from {Path(k.__file__).parent.name}")
    failures = check(k, device)
    # the same tree through LOCAL_KERNELS + get_kernel, in a fresh process (the offline path a cluster uses)
    code = ("import kernels, torch; k = kernels.get_kernel('kernel-builder/activation', version=1); "
            "x = torch.randn(64, 512, device='cuda' if torch.cuda.is_available() else 'cpu'); "
            "o = torch.empty(64, 256, device=x.device); k.silu_and_mul(o, x); "
            "r = torch.nn.functional.silu(x[:, :256]) * x[:, 256:]; "
            "print('LOCAL_KERNELS get_kernel ->', k.__name__, 'max err', (o - r).abs().max().item())")
    env = dict(os.environ, LOCAL_KERNELS=f"kernel-builder/activation={build}", HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    print((r.stdout + r.stderr).strip().splitlines()[-1] if (r.stdout + r.stderr).strip() else f"exit {r.returncode}")
    failures += r.returncode != 0
    print(f"{'PASS' if not failures else 'FAIL'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
