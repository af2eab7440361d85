#!/usr/bin/env bash
# Install the Debian packages the real node needs (devtools/realnode.py): containerd,
# runc, the CNI plugins, iptables, nftables, conntrack and busybox-static (for the local
# images). Does nothing when they are all there. Not root: says what to install, exits 0
# (the real-node tests then skip, or fail under NODELIMITS_REQUIRE_E2E=1).
set -euo pipefail

packages=(containerd runc containernetworking-plugins iptables nftables conntrack busybox-static)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[node-deps] the real node needs: apt-get install ${missing[*]} (as root)" >&2
  exit 0
fi
echo "[node-deps] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# another apt run (a podman install, say) holds the lock: wait for it instead of failing
apt_wait=(-o DPkg::Lock::Timeout=600)
apt-get "${apt_wait[@]}" update -qq >/dev/null
# Where systemd runs, Debian also starts its containerd service: the node never uses it
# (its own socket, root and state under /tmp/nodelimits-node).
apt-get "${apt_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
