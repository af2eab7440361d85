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

# shellcheck disable=SC1091  # tools/lib.sh is linted on its own
. "$here/../lib.sh"
build_cache promtool "$bin" 10

if [ -x "$bin/promtool" ]; then  # its path, not the directory, is what callers read
  log "cached at $bin/promtool"
  echo "$bin/promtool"
  exit 0
fi
require_go 1.26.7
lock_cache

pv=github.com/prometheus/common/version
ld="-s -w -X $pv.Version=$PROMTOOL_VERSION -X $pv.Branch=$PROMETHEUS_MODULE_VERSION"
go_build promtool "$here" github.com/prometheus/prometheus/cmd/promtool "$ld"
echo "$bin/promtool"
