#!/usr/bin/env bash
# Make a Debian base image without a registry: debootstrap a minimal root file system and `docker import`
# it. kernel-builder's images are built FROM such a base where quay.io/pypa/manylinux_2_28 cannot be pulled.
#
#   bash scripts/make_base_image.sh [SUITE] [TAG]     # defaults: bookworm  local/debian:bookworm
#   bash scripts/make_base_image.sh trixie             # the CUDA 12 rows' base (Debian's non-free nvcc 12.4)
#
# Needs root (debootstrap), debootstrap and a running docker (or podman: ENGINE=podman).
# Outputs built FROM a Debian base need GLIBC <= 2.28 to be portable; kernel-builder compiles a small
# shim for the one newer symbol libstdc++ headers pull in (see templates/glibc_compat.cpp.j2) and
# `kernel-builder check` verifies manylinux_2_28 on every .so.
set -euo pipefail

SUITE=${1:-bookworm}
TAG=${2:-local/debian:$SUITE}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ENGINE=${ENGINE:-$(command -v /usr/bin/docker || command -v docker || command -v podman)}

if "$ENGINE" image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG already exists ($("$ENGINE" image inspect -f '{{.Id}}' "$TAG" | cut -c1-19))"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed: apt-get install -y debootstrap" >&2; exit 3; }

ROOT=$(mktemp -d /tmp/kb-debootstrap.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
t0=$(date +%s)
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || {
  echo "debootstrap $SUITE failed; last lines of $ROOT.log:" >&2; tail -n 5 "$ROOT.log" >&2; exit 3; }
rm -f "$ROOT.log"
# apt caches are not part of an image
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | "$ENGINE" import -c 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
echo "made $TAG from debootstrap $SUITE in $(( $(date +%s) - t0 )) s"
