# kernel-builder toolchain image: one per [image.*] of builder/kernel_builder/matrix.toml.
#
# Made by `kernel-builder images build` (BuildKit), which passes the build args below and two secrets:
# `pip.conf` (the host's find-links / index settings, local directories served on 127.0.0.1) and
# `ca.crt` (the host's CA bundle). Secrets are not part of the image nor of BuildKit's cache key.
# kernel-builder itself is not installed here: it is mounted at run time, so a new kernel-builder commit
# never rebuilds these multi-GB images.
#
# Base images: manylinux_2_28 (AlmaLinux 8, glibc 2.28; Python from /opt/python) is the default, so
# outputs run on EL8 / Kylin V10; an image that already has pythonX.Y and g++ (Ascend's CANN images) is
# used as it is; a bare Debian/Ubuntu base gets them from apt (scripts/make_base_image.sh makes one).
ARG BASE_IMAGE=quay.io/pypa/manylinux_2_28_x86_64
FROM ${BASE_IMAGE}

ARG PYTHON=3.11
ARG PIP_PACKAGES="torch"
ARG CUDA_WHEEL_HOME=""

# 1. A C++ compiler, Python with headers and venv, ccache (best effort: builds work without it).
RUN set -eu; tag="cp$(echo "$PYTHON" | tr -d .)"; \
    if [ -x "/opt/python/$tag-$tag/bin/python3" ]; then \
        py="/opt/python/$tag-$tag/bin/python3"; \
        command -v ccache >/dev/null || dnf install -y -q ccache \
            || { dnf install -y -q epel-release && dnf install -y -q ccache; } || echo "ccache: not installed"; \
    elif command -v "python$PYTHON" >/dev/null && "python$PYTHON" -m venv --help >/dev/null 2>&1 \
            && command -v g++ >/dev/null; then \
        py="$(command -v "python$PYTHON")"; \
        command -v ccache >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq \
            && apt-get install -y -qq --no-install-recommends ccache >/dev/null; } || echo "ccache: not installed"; \
    elif command -v apt-get >/dev/null; then \
        apt-get update -qq; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "python$PYTHON" "python$PYTHON-venv" "python$PYTHON-dev" g++ ccache >/dev/null; \
        rm -rf /var/lib/apt/lists/*; py="python$PYTHON"; \
    else \
        echo "kernel-builder: base image has no /opt/python/$tag-$tag (manylinux), no python$PYTHON with venv, no apt-get" >&2; \
        exit 1; \
    fi; \
    "$py" -m venv /opt/venv; \
    mkdir -p /opt/kb-ccache; \
    if command -v ccache >/dev/null; then for c in gcc g++ cc c++; do ln -s "$(command -v ccache)" "/opt/kb-ccache/$c"; done; fi

# 2. torch (+ CUDA toolkit wheels pinned to torch's CUDA) and ninja; a pip toolkit becomes /opt/cuda.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    set -eu; \
    if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi; \
    /opt/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check --progress-bar off \
        ninja $PIP_PACKAGES; \
    if [ -n "$CUDA_WHEEL_HOME" ]; then \
        home="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/$CUDA_WHEEL_HOME"; \
        test -x "$home/bin/nvcc" || { echo "kernel-builder: no nvcc under $home" >&2; exit 1; }; \
        rt="$(cd "$home/lib" && ls libcudart.so.[0-9]* | head -n 1)"; \
        ln -sf "$rt" "$home/lib/libcudart.so"; \
        ln -s "$home" /opt/cuda; \
    fi; \
    /opt/venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv
