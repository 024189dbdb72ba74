#!/usr/bin/env bash
# ascend_build.sh: the one command an Ascend contributor runs to build, test and check the cann (Ascend C)
# variants of kernels_src/.
#
#   ######################################################################################################
#   #  THIS SCRIPT HAS NEVER BEEN RUN. It was written on a machine with no CANN toolkit, no CANN image and #
#   #  no NPU. Everything Ascend C in this repository (the device-code build flow, kernels_src/rmsnorm's  #
#   #  rmsnorm_cann kernel) has never been compiled. Expect to fix things on the first run, and please    #
#   #  report what you had to change.                                                                     #
#   ######################################################################################################
#
# Needs: Docker (or podman: KERNEL_BUILDER_ENGINE=podman), access to the CANN build image(s) the build
# matrix names for its cann rows (`kernel-builder list-variants kernels_src/rmsnorm --all` shows them), and
# this repository set up (`bash scripts/setup.sh` makes .venv). For step 3, an Ascend NPU on this machine
# (driver installed: /dev/davinci*, /usr/local/Ascend/driver); without one the NPU tests are skipped.
#
# Usage:  bash scripts/ascend_build.sh [KERNEL_DIR ...]        (default: every kernels_src/* with cann kernels)
# Env:    KB_CANN_TEST_IMAGE  image to run the NPU tests in (default: the CANN image of the first cann variant;
#                             it needs python3 with torch + torch_npu matching the variant, or pip access)
#         KB_PYTHON           the Python with kernel-builder (default .venv/bin/python)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${KB_PYTHON:-$REPO/.venv/bin/python}
KB=("$PY" -m kernel_builder)
CONFORMANCE=$REPO/../shared/conformance/conformance.py
ENGINE=${KERNEL_BUILDER_ENGINE:-docker}

say() { printf '\n=== %s\n' "$*"; }
die() { printf 'ascend_build.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no $PY: run bash scripts/setup.sh first (or set KB_PYTHON)"
command -v "$ENGINE" >/dev/null || die "$ENGINE not found: cann variants are built in the CANN image, in a container"

if [ $# -gt 0 ]; then
  KERNELS=("$@")
else
  KERNELS=()
  for d in kernels_src/*/; do
    grep -q '^backend = "cann"' "$d/build.toml" 2>/dev/null && KERNELS+=("${d%/}")
  done
fi
[ ${#KERNELS[@]} -gt 0 ] || die "no kernel project with a [kernel.*] backend = \"cann\" table"

status=0
for K in "${KERNELS[@]}"; do
  OUT=$REPO/$K/build
  say "$K: the cann variants of the build matrix and their images"
  "${KB[@]}" list-variants "$K" --all | grep -E 'cann|npu|^host' || true

  # 1. Build every cann variant, each in its CANN container. Inside, the host build runs unchanged: it reads
  #    the CANN version from $ASCEND_HOME_PATH/**/ascend_*_install.info (as torch_npu will on the user's machine),
  #    probes the build flow (ASC's find_package(ASC) if the toolkit has it, else ascendc.cmake), configures and
  #    builds the rendered CMake project once per arch group, and links one .abi3.so (+ one kernel library per
  #    arch group when soc-versions spans several).
  say "$K: building the cann variants (kernel-builder build --all --variant '*cann*')"
  "${KB[@]}" build "$K" --all --variant '*cann*' --out "$OUT"

  # 2. Check every built tree (layout, metadata with the loader's parser, digest, abi3/manylinux).
  for v in "$OUT"/*cann*; do
    [ -d "$v" ] || continue
    say "$K: kernel-builder check $(basename "$v")"
    "${KB[@]}" check "$v" || status=1
  done

  # 3. NPU tests, in a container that sees the NPU, with the variant's torch + torch_npu + CANN.
  if ls /dev/davinci[0-9]* >/dev/null 2>&1; then
    IMAGE=${KB_CANN_TEST_IMAGE:-$("${KB[@]}" list-variants "$K" --all | awk '/cann/ && $NF ~ /:/ {print $NF; exit}')}
    [ -n "$IMAGE" ] || die "cannot tell which image to test in: set KB_CANN_TEST_IMAGE"
    say "$K: NPU tests in $IMAGE"
    DEVICES=()
    for dev in /dev/davinci[0-9]* /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc; do
      [ -e "$dev" ] && DEVICES+=(--device "$dev")
    done
    # The driver and npu-smi come from the host, as Ascend's container guides do it.
    "$ENGINE" run --rm --network host "${DEVICES[@]}" \
      -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro \
      -v /usr/local/dcmi:/usr/local/dcmi:ro -v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro \
      -v "$REPO/$K:/src:ro" -e KERNEL_BUILD_DIR=/src/build -w /src "$IMAGE" \
      bash -lc 'source "${ASCEND_HOME_PATH:-/usr/local/Ascend/ascend-toolkit/latest}/../set_env.sh" 2>/dev/null \
                  || source /usr/local/Ascend/ascend-toolkit/set_env.sh; \
                python3 -m pip install -q pytest "kernels==0.17.2" && \
                python3 -m pytest -q -rs tests/test_*npu*.py' || status=1
  else
    say "$K: no Ascend NPU on this machine (/dev/davinci*): NPU tests not run"
  fi

  # 4. The loader conformance harness on the built tree (static checks everywhere; loading needs an NPU).
  if [ -f "$CONFORMANCE" ]; then
    say "$K: conformance harness"
    "$PY" "$CONFORMANCE" "$OUT" --json "$OUT/../conformance-cann.json" || status=1
  else
    say "no $CONFORMANCE: conformance harness not run"
  fi
done

say "done (exit $status). Remember: this script had never been run before; report what you changed."
exit $status
