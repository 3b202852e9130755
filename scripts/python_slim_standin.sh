#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim when no container registry can be reached.
#
# The stand-in is Debian bookworm (the base of python:3.11-slim) made with debootstrap, with
# Debian's Python 3.11 and pip as `python` and `pip`, tagged localhost/python:3.11-slim so the
# Dockerfile's `FROM python:3.11-slim` finds it. It differs from the real image: Python is
# Debian's (/usr/bin), not a source build in /usr/local, and it trusts this machine's CA bundle
# (copied in, so pip inside the build reaches the package index through this machine's TLS
# interception). Use it to check the Dockerfile here; push images built on the real base.
#
#   scripts/python_slim_standin.sh            # builds it unless it exists
#   FORCE=1 scripts/python_slim_standin.sh    # rebuilds it
set -euo pipefail

TAG=localhost/python:3.11-slim
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ -z "${FORCE:-}" ] && podman image exists "$TAG" 2>/dev/null; then
    echo "stand-in $TAG exists (FORCE=1 rebuilds it)"
    exit 0
fi
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y debootstrap podman" >&2; exit 1; }
done

ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
echo "building a STAND-IN for python:3.11-slim with debootstrap ($SUITE, $MIRROR)"
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
ln -sf python3 "$ROOTFS/usr/bin/python"
ln -sf pip3 "$ROOTFS/usr/bin/pip"
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED   # python:3.11-slim's pip installs system-wide too
if [ -f "$CA_BUNDLE" ]; then
    cp "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin

tar -C "$ROOTFS" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "stand-in $TAG built: $(podman run --rm --net=none "$TAG" python --version 2>/dev/null || echo 'Python 3.11 (Debian)')"
