#!/usr/bin/env bash
# base-image.sh OUT.tar: a stand-in for python:3.11-slim-bookworm where no registry is
# reachable. Debian bookworm (debootstrap minbase) with Debian's python3.11 and its venv
# module, `python`/`python3` on /usr/local/bin as in the official image. The tarball is
# imported under the official name for the build only: the Dockerfile is unchanged, and
# users build on the official image (pinned by digest in the release workflow).
set -euo pipefail
out=${1:?usage: base-image.sh OUT.tar}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "base-image: debootstrap missing: run tools/image/deps.sh (as root)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 3; }
work=$(mktemp -d "${TMPDIR:-/tmp}/nodelimits-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
debootstrap --variant=minbase --include=python3.11,ca-certificates \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; echo "base-image: debootstrap failed (mirror $mirror)" >&2; exit 1; }
# python3.11-venv (ensurepip) fails to configure inside debootstrap's first pass; in the
# finished root it installs cleanly.
cp /etc/resolv.conf "$root/etc/resolv.conf"
{ chroot "$root" apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends python3.11-venv
} >>"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; echo "base-image: apt-get install python3.11-venv failed in the new root" >&2; exit 1; }
: >"$root/etc/resolv.conf"
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3.11"
# what the slim image drops as well: apt lists, caches, docs, man pages
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
tar --numeric-owner -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
