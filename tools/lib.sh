# shellcheck shell=bash
# Shared by the scripts that build binaries from the Go module proxy into a cache keyed by
# their versions (tools/testbin, tools/promtool, tools/peers, tools/oracle). Source it, then:
#
#   build_cache TOOL DIR         the log prefix and the cache directory ($bin) to build into
#   cached_or_continue NAME...   prints $bin and exits 0 when every NAME is there
#   require_go MIN_VERSION       exits 3 (callers skip, or fail under NODELIMITS_REQUIRE_E2E=1)
#   lock_cache                   one build at a time per cache directory
#   go_build NAME MODULE_DIR PKG LDFLAGS
#
# NODELIMITS_BUILD_NICE (default: build_cache's third argument, else 0) lowers a build's
# priority.

build_cache() {  # build_cache TOOL DIR [NICE]
  TOOL=$1 bin=$2 build_nice=${3:-0}
}

log() { printf '[%s %s] %s\n' "$TOOL" "$(date +%H:%M:%S)" "$*" >&2; }

all_present() {  # all_present NAME...: every NAME exists in $bin
  local name
  for name in "$@"; do [ -e "$bin/$name" ] || return 1; done
}

cached_or_continue() {  # cached_or_continue NAME...
  # Cached binaries need no Go: a machine that has them (e.g. a restored CI cache) uses them.
  if all_present "$@"; then
    log "all binaries cached in $bin"
    echo "$bin"
    exit 0
  fi
}

require_go() {  # require_go MIN_VERSION
  if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed: get it from https://go.dev/dl/ (Go >= $1) and put 'go' on PATH"
    exit 3
  fi
}

lock_cache() {
  mkdir -p "$bin"
  # Concurrent runs wait here, then find the binaries built. (flock is util-linux; without
  # it, concurrent first builds just duplicate work.)
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$bin/.lock"
    if ! flock -n 9; then
      log "another build is running in $bin; waiting for it"
      flock 9
    fi
  fi
  export CGO_ENABLED=0 GOFLAGS=-mod=readonly
}

go_build() {  # go_build NAME MODULE_DIR PACKAGE LDFLAGS
  local name=$1 dir=$2 pkg=$3 ld=$4 t0
  if [ -x "$bin/$name" ]; then
    log "$name: cached at $bin/$name"
    return
  fi
  log "$name: building $pkg (a cold build on a 2-core machine takes minutes)"
  t0=$(date +%s)
  (cd "$dir" && nice -n "${NODELIMITS_BUILD_NICE:-$build_nice}" \
    go build -trimpath -ldflags "$ld" -o "$bin/$name.tmp.$$" "$pkg")
  mv "$bin/$name.tmp.$$" "$bin/$name"   # atomic: a killed build never leaves a half binary
  log "$name: built in $(( $(date +%s) - t0 )) s, $(du -h "$bin/$name" | cut -f1)"
}
