#!/usr/bin/env bash
# Build the peer admission controllers the apiserver benchmark compares nodelimits with
# (bench/bench_apiserver.py, bench/peer_verdicts.py): Gatekeeper (the webhook and its
# offline `gator` CLI) and Kyverno (the admission controller and its offline CLI), from the
# Go module proxy, into a cache directory keyed by their versions. Only `make bench` and
# the benchmarks ask for them: `make test` never does (a cold build is tens of minutes on
# two cores). Does nothing when the binaries are already there. Prints the directory on
# stdout's last line: BIN=$(tools/peers/build.sh | tail -n1).
#
# `build.sh gatekeeper` or `build.sh kyverno` builds one peer only.
#
# One go.mod per peer (as in tools/testbin): Kyverno's own go.mod replaces
# k8s.io/pod-security-admission with its fork, so it cannot be `go install`ed; the
# wrapper module carries the same replace. Both build with CGO_ENABLED=0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GATEKEEPER_VERSION=v3.23.1
KYVERNO_VERSION=v1.19.1
key="gatekeeper-${GATEKEEPER_VERSION}_kyverno-${KYVERNO_VERSION}"
cache_root=${NODELIMITS_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodelimits/peers}
bin="$cache_root/$key"

peers=(gatekeeper kyverno)
case "${1:-}" in
  gatekeeper | kyverno) peers=("$1") ;;
  "") ;;
  *) echo "usage: $0 [gatekeeper|kyverno]" >&2; exit 2 ;;
esac

names=()
for peer in "${peers[@]}"; do
  case $peer in
    gatekeeper) names+=(gatekeeper gator gatekeeper.yaml) ;;
    kyverno) names+=(kyverno kubectl-kyverno kyverno.yaml) ;;
  esac
done

# shellcheck disable=SC1091  # tools/lib.sh is linted on its own
. "$here/../lib.sh"
build_cache peers "$bin" 10

cached_or_continue "${names[@]}"
require_go 1.26.6
lock_cache

copy_manifest() {  # copy_manifest MODULE_DIR MODULE FILE NAME: a manifest shipped in the module
  local dir=$1 module=$2 file=$3 name=$4 src
  [ -f "$bin/$name" ] && return
  src=$(cd "$here/$dir" && go list -m -f '{{.Dir}}' "$module")/$file
  cp "$src" "$bin/$name.tmp.$$" && mv "$bin/$name.tmp.$$" "$bin/$name"
}

start=$(date +%s)
for peer in "${peers[@]}"; do
  case $peer in
    gatekeeper)
      gk=github.com/open-policy-agent/gatekeeper/v3
      go_build gatekeeper "$here/gatekeeper" "$gk" "-s -w -X $gk/pkg/version.Version=$GATEKEEPER_VERSION"
      go_build gator "$here/gatekeeper" "$gk/cmd/gator" "-s -w -X $gk/pkg/version.Version=$GATEKEEPER_VERSION"
      # its CRDs (ConstraintTemplate, Config, status kinds) for the out-of-cluster webhook
      copy_manifest gatekeeper "$gk" deploy/gatekeeper.yaml gatekeeper.yaml
      ;;
    kyverno)
      ky=github.com/kyverno/kyverno
      go_build kyverno "$here/kyverno" "$ky/cmd/kyverno" "-s -w -X $ky/pkg/version.BuildVersion=$KYVERNO_VERSION"
      go_build kubectl-kyverno "$here/kyverno" "$ky/cmd/cli/kubectl-kyverno" \
        "-s -w -X $ky/pkg/version.BuildVersion=$KYVERNO_VERSION"
      copy_manifest kyverno "$ky" config/install-latest-testing.yaml kyverno.yaml
      ;;
  esac
done
log "all binaries ready in $(( $(date +%s) - start )) s"
echo "$bin"
