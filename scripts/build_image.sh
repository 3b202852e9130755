#!/usr/bin/env bash
# `make image`: build the Dockerfile with podman (Debian's package, installed when missing), no Docker engine.
#
#   scripts/build_image.sh                  # keras-serve:latest, the full server
#   TARGET=litert TAG=keras-serve:litert scripts/build_image.sh
#
# When python:3.11-slim cannot be pulled (no registry reachable), scripts/python_slim_standin.sh builds
# a local STAND-IN for it with debootstrap, and this script says so. The build runs with
# --isolation chroot (no user namespaces or cgroups needed) and --format docker (the OCI format drops
# HEALTHCHECK).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-keras-serve:latest}
TARGET=${TARGET:-}
BASE=python:3.11-slim

if ! command -v podman >/dev/null; then
    echo "podman is missing: installing Debian's podman and buildah"
    apt-get install -y podman buildah >/dev/null
fi

if podman image exists "$BASE"; then
    echo "base: $BASE (local: $(podman image inspect --format '{{.RepoTags}}' "$BASE"))"
elif timeout 60 podman pull -q "docker.io/library/$BASE" >/dev/null 2>&1; then
    echo "base: docker.io/library/$BASE (pulled)"
else
    echo "base: docker.io/library/$BASE cannot be pulled; using a local STAND-IN (scripts/python_slim_standin.sh)"
    command -v debootstrap >/dev/null || apt-get install -y debootstrap >/dev/null
    scripts/python_slim_standin.sh
fi
if podman image inspect --format '{{.RepoTags}}' "$BASE" | grep -q localhost/python; then
    echo "NOTE: building on the debootstrap STAND-IN for $BASE, not the real image"
fi

start=$(date +%s)
podman build --isolation chroot --format docker --pull=never ${TARGET:+--target "$TARGET"} -t "$TAG" .
echo "built $TAG in $(( $(date +%s) - start )) s; size: $(podman image inspect --format '{{.Size}}' "$TAG" \
    | awk '{printf "%.2f GB (%d bytes)", $1 / 1e9, $1}')"
