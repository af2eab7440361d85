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
bin="$cache_root/oracle-$key"

# shellcheck disable=SC1091  # tools/lib.sh is linted on its own
. "$here/../lib.sh"
build_cache oracle "$bin"

if [ -x "$bin/k8s-oracle" ]; then  # quietly: the oracle tests ask for it every session
  echo "$bin/k8s-oracle"
  exit 0
fi
require_go 1.26
lock_cache
go_build k8s-oracle "$here" . "-s -w"
echo "$bin/k8s-oracle"
