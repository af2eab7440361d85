#!/usr/bin/env bash
# Build the real control-plane binaries the e2e tests need (kube-apiserver, kubectl,
# etcd, helm) from the Go module proxy, into a cache directory keyed by their versions.
# `build.sh --node` also builds what a real node needs (kubelet, kube-scheduler,
# kube-controller-manager, kube-proxy): only the real-node tests, `make cluster-node`
# and `make demo` ask for them, so a plain `make test-fast` never waits on them.
# Does nothing when the binaries are already there. Prints the directory on stdout's
# last line so callers can do: BIN=$(tools/testbin/build.sh | tail -n1).
#
# Why go.mod per tool: k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces
# staging modules with local paths), and one module for all tools would let minimal
# version selection unify grpc/otel/etcd-client versions across them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.14
HELM_VERSION=v3.22.0
key="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
cache_root=${NODELIMITS_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodelimits/testbin}
bin="$cache_root/$key"

names=(etcd kubectl helm kube-apiserver)
node_names=(kubelet kube-scheduler kube-controller-manager kube-proxy)
case "${1:-}" in
  --node) names+=("${node_names[@]}") ;;
  "") ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac

# shellcheck disable=SC1091  # tools/lib.sh is linted on its own
. "$here/../lib.sh"
build_cache testbin "$bin"

cached_or_continue "${names[@]}"
require_go 1.26
lock_cache

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}

kube_ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
done

start=$(date +%s)
go_build etcd "$here/etcd" go.etcd.io/etcd/server/v3 "-s -w"
go_build kubectl "$here/kube" k8s.io/kubernetes/cmd/kubectl "$kube_ld"
go_build helm "$here/helm" helm.sh/helm/v3/cmd/helm "$helm_ld"
go_build kube-apiserver "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ld"
if [ ${#names[@]} -gt 4 ]; then
  # same module as kubectl/kube-apiserver (go.sum holds their extra dependencies), so they
  # share its build cache: each one after the first takes a fraction of a cold build
  for name in "${node_names[@]}"; do
    go_build "$name" "$here/kube" "k8s.io/kubernetes/cmd/$name" "$kube_ld"
  done
fi
log "all binaries ready in $(( $(date +%s) - start )) s"
echo "$bin"
