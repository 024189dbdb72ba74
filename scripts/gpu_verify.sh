#!/usr/bin/env bash
# On a CUDA machine: build kernels_src with kernel-builder (CPU + CUDA variants), check the trees, run the
# kernels_src tests on the GPU through the real loader, then time every op (scripts/bench_kernels.py).
# Used with the lent H100, whose image has torch + nvcc but not `kernels`: wheels carried in .whl/ are
# installed first when present. Results go to $OUT (default /tmp/gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/builder${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export KERNEL_BUILDER_CACHE=${KERNEL_BUILDER_CACHE:-/tmp/kbcache}
# The H100 image sets CXX=/opt/gcc/bin/g++, which links libstdc++ statically (kernel-builder refuses that
# output); its system g++ links it shared, as torch expects.
[ "${CXX:-}" = /opt/gcc/bin/g++ ] && export CXX=/usr/bin/g++ CC=/usr/bin/gcc
nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
for k in activation rmsnorm rotary; do
  /usr/bin/time -f "build $k: %e s" python3 -m kernel_builder build kernels_src/$k --out /tmp/build/$k ${KB_BUILD_ARGS:-} || exit 1
  python3 -m kernel_builder check /tmp/build/$k ${KB_CHECK_ARGS:-} | tee -a "$OUT/check.txt" || exit 1
done
python3 -m pytest -q -p no:cacheprovider tests/test_kernels_src.py tests/test_rotary.py 2>&1 | tee "$OUT/tests.txt" | tail -15
python3 scripts/bench_kernels.py --build-dir activation=/tmp/build/activation --build-dir rmsnorm=/tmp/build/rmsnorm --build-dir rotary=/tmp/build/rotary \
  --csv "$OUT/bench.csv" ${KB_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"
