#!/usr/bin/env bash
# Build promtool (Prometheus' rule checker and rule unit-test runner) from the Go module
# proxy into a cache directory keyed by its version. The chart tests of the PrometheusRule
# (tests/chart/test_monitoring.py) ask for it; nothing else does. Does nothing when the
# binary is already there. Prints the binary's path on stdout's last line:
#   PROMTOOL=$(tools/promtool/build.sh | tail -n1)
#
# Its own go.mod (like tools/testbin): github.com/prometheus/prometheus's module graph
# (every service discovery's SDK) must not unify versions with the Kubernetes binaries.
# Exit 3: Go is not installed (the tests skip on it, or fail under NODELIMITS_REQUIRE_E2E=1).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROMETHEUS_MODULE_VERSION=v0.316.0   # Prometheus 3.16.0 (the module's v0.3MM.P is v3.MM.P)
PROMTOOL_VERSION=3.16.0
key="promtool-${PROMTOOL_VERSION}"
cache_root=${NODELIMITS_PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodelimits/promtool}
bin="$cache_root/$key"

log() { printf '[promtool %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$bin/promtool" ]; then
  log "cached at $bin/promtool"
  echo "$bin/promtool"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: get it from https://go.dev/dl/ (Go >= 1.26.7) and put 'go' on PATH"
  exit 3
fi

mkdir -p "$bin"
# One build at a time per cache directory (see tools/testbin/build.sh).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$bin/.lock"
  if ! flock -n 9; then
    log "another build is running in $bin; waiting for it"
    flock 9
  fi
  if [ -x "$bin/promtool" ]; then
    log "built by the other run: $bin/promtool"
    echo "$bin/promtool"
    exit 0
  fi
fi
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

pv=github.com/prometheus/common/version
ld="-s -w -X $pv.Version=$PROMTOOL_VERSION -X $pv.Branch=$PROMETHEUS_MODULE_VERSION"
log "building github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" \
  "(first build on a 2-core machine takes minutes)"
t0=$(date +%s)
(cd "$here" && nice go build -trimpath -ldflags "$ld" -o "$bin/promtool.tmp.$$" \
  github.com/prometheus/prometheus/cmd/promtool)
mv "$bin/promtool.tmp.$$" "$bin/promtool"   # atomic: a killed build never leaves a half binary
log "built in $(( $(date +%s) - t0 )) s, $(du -h "$bin/promtool" | cut -f1)"
echo "$bin/promtool"
