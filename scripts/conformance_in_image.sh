#!/usr/bin/env bash
# Run the loader conformance harness (../shared/conformance) on a build tree inside a toolchain image,
# i.e. with the torch that variant was built for, when this host's torch cannot import it (another torch
# release). The harness and its packages (kernels, transformers) are installed into the throwaway
# container only.
#
#   bash scripts/conformance_in_image.sh IMAGE TREE [conformance.py options]
#   e.g. bash scripts/conformance_in_image.sh kernel-builder/torch211-cu130:TAG /tmp/out/torch211-cxx11-cpu-x86_64-linux
set -euo pipefail
IMAGE=$1; TREE=$(realpath "$2"); shift 2
HERE=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${CONFORMANCE_DIR:-$HERE/../shared/conformance}
[ -f "$HARNESS/conformance.py" ] || { echo "no conformance harness at $HARNESS" >&2; exit 3; }
ENGINE=${ENGINE:-$(command -v /usr/bin/docker || command -v docker || command -v podman)}
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
"$ENGINE" run --rm --network host --user "$(id -u):$(id -g)" -e HOME=/tmp -e PYTHONDONTWRITEBYTECODE=1 \
  -e PIP_CERT=/etc/kernel-builder/ca.crt -e PIP_DISABLE_PIP_VERSION_CHECK=1 \
  --mount "type=bind,source=$CA,target=/etc/kernel-builder/ca.crt,readonly" \
  --mount "type=bind,source=$(realpath "$HARNESS"),target=/conformance,readonly" \
  --mount "type=bind,source=$TREE,target=/tree/$(basename "$TREE"),readonly" \
  "$IMAGE" sh -c 'pip install -q --target /tmp/site kernels==0.17.2 transformers==5.22.2 >/tmp/pip.log 2>&1 \
      || { tail -n 5 /tmp/pip.log; exit 3; }; \
    PYTHONPATH=/tmp/site python -c "import torch; print(\"torch\", torch.__version__)"; \
    PYTHONPATH=/tmp/site python /conformance/conformance.py /tree "$@"' conformance "$@"
