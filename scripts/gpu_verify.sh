#!/usr/bin/env bash
# On a CUDA machine: build kernels_src with kernel-builder (CPU + CUDA variants), check the trees, run the
# kernels_src tests on the GPU through the real loader, time every op (scripts/bench_kernels.py) and run the
# Qwen3 end-to-end example (scripts/e2e_qwen3.py). Used with the lent H100/H200, whose image has torch + nvcc
# but not `kernels`: wheels carried in .whl/ are installed first when present. Results go to $OUT
# (default /tmp/gpu-out).
#   STAGES="build tests bench e2e" (default: all)   KB_BUILD_ARGS (default "--cuda-archs 9.0": this GPU only)
#   BUILD_ROOT (default /tmp/build)   KB_BENCH_ARGS, KB_E2E_ARGS: extra arguments
#   KB_BUILDER_ROOT (default: this checkout): a directory holding builder/ and templates/ to build with, e.g. a
#   snapshot of the last commit (`git archive HEAD builder templates | tar -x -C .out/head`, carried) when the
#   working tree holds others' unfinished builder changes
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
STAGES=${STAGES:-build tests bench e2e}
BUILD_ROOT=${BUILD_ROOT:-/tmp/build}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${KB_BUILDER_ROOT:-$PWD}/builder${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export KERNEL_BUILDER_CACHE=${KERNEL_BUILDER_CACHE:-/tmp/kbcache}
# The H100 image sets CXX=/opt/gcc/bin/g++, which links libstdc++ statically (kernel-builder refuses that
# output); its system g++ links it shared, as torch expects.
[ "${CXX:-}" = /opt/gcc/bin/g++ ] && export CXX=/usr/bin/g++ CC=/usr/bin/gcc
nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
status=0  # a failed stage makes the exit status 1; later stages still run
if has build; then
  pids=()
  for k in activation rmsnorm rotary; do  # three builds at once (each compiles its own sources in parallel)
    ( /usr/bin/time -f "build $k: %e s" python3 -m kernel_builder build kernels_src/$k --out $BUILD_ROOT/$k \
        ${KB_BUILD_ARGS:---cuda-archs 9.0} > "$OUT/build-$k.log" 2>&1 ) & pids+=($!)
  done
  for i in 0 1 2; do wait ${pids[$i]} || { tail -30 "$OUT"/build-*.log; exit 1; }; done
  tail -n 2 "$OUT"/build-*.log
  for k in activation rmsnorm rotary; do
    python3 -m kernel_builder check $BUILD_ROOT/$k ${KB_CHECK_ARGS:-} | tee -a "$OUT/check.txt" || exit 1
  done
fi
if has tests; then
  KB_PREBUILT=$BUILD_ROOT python3 -m pytest -q -p no:cacheprovider --maxfail=25 tests/test_kernels_src.py tests/test_rotary.py 2>&1 | tee "$OUT/tests.txt" | tail -15
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "GPU tests FAILED (see $OUT/tests.txt)"; status=1; }
fi
if has e2e; then
  python3 scripts/e2e_qwen3.py --build-dir $BUILD_ROOT --json "$OUT/e2e.json" ${KB_E2E_ARGS:-} > "$OUT/e2e.log" 2>&1
  rc=$?; echo "e2e exit $rc"; [ $rc -eq 0 ] || status=1; grep -v "^DEBUG urllib\|^DEBUG filelock\|^DEBUG httpcore" "$OUT/e2e.log" | grep -E "e2e_qwen3|Error|error" | tail -45
fi
if has bench; then
  python3 scripts/bench_kernels.py --build-dir $BUILD_ROOT --csv "$OUT/bench.csv" --png "$OUT/bench.png" \
    ${KB_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "bench FAILED"; status=1; }
fi
exit $status
