#!/usr/bin/env bash
# Try nodelimits on a local kind cluster (needs Docker and Go; not run by the test suite,
# which lints this script with shellcheck). Steps, also in docs/install.md:
#   1. install kind from the Go module proxy (sigs.k8s.io/kind)
#   2. create a cluster (skipped if it exists)
#   3. build the image from ./Dockerfile and load it into the cluster's nodes
#   4. helm install charts/nodelimits with the chart's built-in certificates
#
# Usage: tools/kind-install.sh [helm upgrade --install flags...]
#   e.g. tools/kind-install.sh --set config.platform.limits_file=/limits/limits.yaml
# Environment: CLUSTER (nodelimits), NAMESPACE (nodelimits-system), RELEASE (nodelimits),
#   IMAGE (nodelimits:dev), KIND_VERSION (v0.33.0), KIND_NODE_IMAGE (pinned 1.37.0),
#   HELM (helm), KUBECTL (kubectl), DOCKER (docker).
set -euo pipefail

CLUSTER=${CLUSTER:-nodelimits}
NAMESPACE=${NAMESPACE:-nodelimits-system}
RELEASE=${RELEASE:-nodelimits}
IMAGE=${IMAGE:-nodelimits:dev}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5}
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
DOCKER=${DOCKER:-docker}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[kind-install] %s\n' "$*" >&2; }
need() {
  command -v "$1" >/dev/null 2>&1 || { log "$1 is required: $2"; exit 2; }
}

need go "install Go >= 1.22 from https://go.dev/dl/"
need "$DOCKER" "install Docker (kind runs its nodes as containers)"
need "$HELM" "install helm >= 3.14 (or tools/testbin/build.sh builds one)"
need "$KUBECTL" "install kubectl (or tools/testbin/build.sh builds one)"

# 1. kind
GOBIN=$(go env GOPATH)/bin
export PATH="$GOBIN:$PATH"
if ! kind version 2>/dev/null | grep -q "${KIND_VERSION}"; then
  log "installing sigs.k8s.io/kind@${KIND_VERSION}"
  go install "sigs.k8s.io/kind@${KIND_VERSION}"
fi

# 2. cluster
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists"
else
  log "creating cluster $CLUSTER ($KIND_NODE_IMAGE)"
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s
fi
context="kind-$CLUSTER"

# 3. image
log "building $IMAGE"
"$DOCKER" build --build-arg "REVISION=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" "$repo"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# 4. chart (built-in certificates: no cert-manager needed)
repository=${IMAGE%:*}
tag=${IMAGE##*:}
log "installing release $RELEASE into namespace $NAMESPACE"
"$HELM" upgrade --install "$RELEASE" "$repo/charts/nodelimits" \
  --kube-context "$context" --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="$repository" --set image.tag="$tag" --set image.pullPolicy=Never \
  --set certificates.mode=builtin \
  --wait --timeout 5m "$@"

"$KUBECTL" --context "$context" -n "$NAMESPACE" get pods -o wide
log "done: see docs/install.md, 'Check that it works'"
