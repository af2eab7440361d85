#!/usr/bin/env bash
# Install what building, running and publishing the image needs here (tests/release,
# make image, make release): podman and buildah (OCI images from the Dockerfile, no Docker
# engine), runc, debootstrap (the stand-in base image when python:3.11-slim-bookworm cannot
# be pulled), Debian's docker-registry (the CNCF distribution registry, on loopback) and
# skopeo. Does nothing when they are all there. Not root: says what to install, exits 0
# (the release tests then skip, or fail under NODELIMITS_REQUIRE_E2E=1).
set -euo pipefail

packages=(podman buildah runc debootstrap docker-registry skopeo uidmap)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[image-deps] the image tests need: apt-get install ${missing[*]} (as root)" >&2
  exit 0
fi
echo "[image-deps] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_wait=(-o DPkg::Lock::Timeout=600)   # another apt run (tools/node-deps.sh) may hold the lock
apt-get "${apt_wait[@]}" update -qq >/dev/null
apt-get "${apt_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
