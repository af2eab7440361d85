#!/usr/bin/env bash
# Build the differential oracle (main.go: Kubernetes v1.37.2's own pod defaulting and
# PodRequests/PodLimits) into a cache directory keyed by its sources. Does nothing when it
# is already built. Prints the binary's path on stdout's last line:
#   ORACLE=$(tools/oracle/build.sh | tail -n1)
# go.mod is tools/testbin/kube/go.mod with another module name (same k8s.io/kubernetes and
# staging replaces, same go.sum), so the first build reuses the build cache that the
# kube-apiserver build filled: a cold build compiles part of Kubernetes (minutes on 2 cores).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${NODELIMITS_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodelimits/testbin}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)
dir="$cache_root/oracle-$key"
bin="$dir/k8s-oracle"

log() { printf '[oracle %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: get it from https://go.dev/dl/ (Go >= 1.26) and put 'go' on PATH"
  exit 3
fi
mkdir -p "$dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    log "another build is running in $dir; waiting for it"
    flock 9
  fi
fi
if [ ! -x "$bin" ]; then
  export CGO_ENABLED=0 GOFLAGS=-mod=readonly
  log "building $bin (a cold build compiles part of Kubernetes: minutes)"
  t0=$(date +%s)
  (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp.$$" .)
  mv "$bin.tmp.$$" "$bin"   # atomic: a killed build never leaves a half binary
  log "built in $(( $(date +%s) - t0 )) s"
fi
echo "$bin"
