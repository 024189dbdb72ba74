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
#
# Where nvcc comes from (CUDA_TOOLKIT, the image's `toolkit` in matrix.toml); every CUDA image ends with
# the toolkit at /opt/cuda:
#   pip   toolkit wheels installed next to torch (CUDA 13: PyPI has a complete nvcc), CUDA_WHEEL_HOME under
#         site-packages
#   apt   Debian's non-free nvidia-cuda-toolkit (the only CUDA 12 nvcc reachable without NVIDIA's servers:
#         12.4 in trixie); /opt/cuda is a small tree of links (bin/nvcc, the CUDA headers, lib64)
#   base  the base image has it (NVIDIA's CUDA images, PyTorch's manylinux builder images): /usr/local/cuda
# HOST_COMPILER (e.g. g++-13) pins the C++ compiler of an apt base to one its nvcc accepts (nvcc 12.4
# refuses gcc > 13); it becomes gcc/g++/cc/c++ in /usr/local/bin, so nvcc and ccache find it first.
ARG BASE_IMAGE=quay.io/pypa/manylinux_2_28_x86_64
FROM ${BASE_IMAGE}

ARG PYTHON=3.11
ARG PIP_PACKAGES="torch"
ARG CUDA_WHEEL_HOME=""
ARG CUDA_TOOLKIT=""
ARG HOST_COMPILER=""

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
        cxx="${HOST_COMPILER:-g++}"; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "python$PYTHON" "python$PYTHON-venv" "python$PYTHON-dev" "$cxx" ccache >/dev/null; \
        if [ -n "$HOST_COMPILER" ]; then \
            v="${HOST_COMPILER#g++-}"; \
            for c in g++ c++; do ln -sf "/usr/bin/g++-$v" "/usr/local/bin/$c"; done; \
            for c in gcc cc; do ln -sf "/usr/bin/gcc-$v" "/usr/local/bin/$c"; done; \
        fi; \
        rm -rf /var/lib/apt/lists/*; py="python$PYTHON"; \
    else \
        echo "kernel-builder: base image has no /opt/python/$tag-$tag (manylinux), no python$PYTHON with venv, no apt-get" >&2; \
        exit 1; \
    fi; \
    "$py" -m venv /opt/venv; \
    mkdir -p /opt/kb-ccache; \
    if command -v ccache >/dev/null; then for c in gcc g++ cc c++; do ln -s "$(command -v ccache)" "/opt/kb-ccache/$c"; done; fi

# 2. A CUDA toolkit that is not pip's: Debian's (non-free) or the base image's, as /opt/cuda. glibc >= 2.41
#    (trixie) declares sinpi/cospi(f) noexcept and CUDA < 12.9 declares them without (an error in every .cu
#    that includes <cmath>): Debian's header gets glibc's __THROW on those four. A probe .cu (<cmath>,
#    std::stoi) must compile with the image's host compiler, or the image fails here.
RUN set -eu; \
    if [ "$CUDA_TOOLKIT" = apt ]; then \
        if [ -f /etc/apt/sources.list ]; then sed -i -E 's/^(deb .* main)$/\1 contrib non-free/' /etc/apt/sources.list; fi; \
        for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && sed -i -E 's/^Components: main$/Components: main contrib non-free/' "$f"; done; \
        apt-get update -qq; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit >/dev/null; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
        mkdir -p /opt/cuda/bin /opt/cuda/include; \
        ln -s "$(command -v nvcc)" /opt/cuda/bin/nvcc; \
        ln -s "/usr/lib/$(gcc -dumpmachine)" /opt/cuda/lib64; \
        dpkg -L nvidia-cuda-dev libcub-dev libthrust-dev libcu++-dev 2>/dev/null | grep -E '^/usr/include/[^/]+$' \
            | sort -u | while read -r h; do ln -s "$h" /opt/cuda/include/; done; \
        test -e /opt/cuda/include/cuda_runtime.h || { echo "kernel-builder: no cuda_runtime.h from nvidia-cuda-dev" >&2; exit 1; }; \
        sed -i -E 's/^(extern __DEVICE_FUNCTIONS_DECL__ __device_builtin__ (double|float) +(sinpi|sinpif|cospi|cospif)\((double|float) x\));/\1 __THROW;/' \
            /usr/include/crt/math_functions.h; \
    elif [ "$CUDA_TOOLKIT" = base ]; then \
        for d in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-*; do \
            if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then ln -s "$d" /opt/cuda; break; fi; \
        done; \
        test -x /opt/cuda/bin/nvcc || { echo "kernel-builder: the base image has no CUDA toolkit (/usr/local/cuda)" >&2; exit 1; }; \
    fi; \
    if [ -e /opt/cuda/bin/nvcc ]; then \
        /opt/cuda/bin/nvcc --version | tail -n 2; \
        printf '#include <cmath>\n#include <string>\n__global__ void k(float *x) { x[threadIdx.x] = sinpif(x[0]); }\nint f(const std::string &s) { return std::stoi(s); }\n' > /tmp/kb-probe.cu; \
        /opt/cuda/bin/nvcc -c /tmp/kb-probe.cu -o /tmp/kb-probe.o \
            || { echo "kernel-builder: nvcc cannot compile with this image's host compiler ($(g++ --version | head -n 1))" >&2; exit 1; }; \
        rm -f /tmp/kb-probe.*; \
    fi

# 3. torch (+ CUDA toolkit wheels pinned to torch's CUDA) and ninja; a pip toolkit becomes /opt/cuda.
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

# 4. Debian's Python builds extensions with <triplet>-gcc / <triplet>-g++ (its sysconfig CC, CXX, LDSHARED),
#    names only the default g++ package provides: with a pinned compiler they name the pinned one.
RUN set -eu; \
    if [ -n "$HOST_COMPILER" ]; then \
        v="${HOST_COMPILER#g++-}"; t="$(gcc -dumpmachine)"; \
        ln -sf "/usr/bin/g++-$v" "/usr/local/bin/$t-g++"; ln -sf "/usr/bin/gcc-$v" "/usr/local/bin/$t-gcc"; \
        "$t-g++" --version | head -n 1; \
    fi
