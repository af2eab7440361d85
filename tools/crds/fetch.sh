#!/usr/bin/env bash
# Fetch the upstream CRDs of the workload kinds nodelimits checks (issue 15), at pinned
# versions, from the Go module proxy (the projects ship their CRD manifests inside their Go
# modules), into a cache directory keyed by the pins. The e2e tests install them into the
# test apiserver; no controller is needed to create their objects.
# Does nothing when the files are already there. Prints the directory on stdout's last line:
#   CRDS=$(tools/crds/fetch.sh | tail -n1)
# A module the proxy does not serve is reported and skipped (its kinds' e2e tests skip);
# `--strict` makes that an error.
set -euo pipefail

strict=0
case "${1:-}" in
  --strict) strict=1 ;;
  "") ;;
  *) echo "usage: $0 [--strict]" >&2; exit 2 ;;
esac

# module@version  path-in-module ...  (MPIJob v1 and v2beta1 share the CRD name
# mpijobs.kubeflow.org: only the mpi-operator's v2beta1 one is installed.)
PINS=(
  "volcano.sh/volcano@v1.10.0 config/crd/volcano/bases/batch.volcano.sh_jobs.yaml"
  "github.com/kubeflow/training-operator@v1.9.0 manifests/base/crds/kubeflow.org_pytorchjobs.yaml manifests/base/crds/kubeflow.org_tfjobs.yaml manifests/base/crds/kubeflow.org_xgboostjobs.yaml manifests/base/crds/kubeflow.org_paddlejobs.yaml manifests/base/crds/kubeflow.org_jaxjobs.yaml"
  "github.com/kubeflow/mpi-operator@v0.6.0 manifests/base/kubeflow.org_mpijobs.yaml"
  "sigs.k8s.io/jobset@v0.8.0 config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml"
  "sigs.k8s.io/lws@v0.6.1 config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
  "github.com/ray-project/kuberay/ray-operator@v1.5.0 config/crd/bases/ray.io_rayclusters.yaml config/crd/bases/ray.io_rayjobs.yaml config/crd/bases/ray.io_rayservices.yaml"
  "github.com/argoproj/argo-workflows/v3@v3.6.4 manifests/base/crds/minimal/argoproj.io_workflows.yaml manifests/base/crds/minimal/argoproj.io_workflowtemplates.yaml manifests/base/crds/minimal/argoproj.io_clusterworkflowtemplates.yaml manifests/base/crds/minimal/argoproj.io_cronworkflows.yaml"
  "github.com/kubeflow/trainer/v2@v2.0.0 manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml manifests/base/crds/trainer.kubeflow.org_trainingruntimes.yaml manifests/base/crds/trainer.kubeflow.org_clustertrainingruntimes.yaml"
  "github.com/kubeflow/spark-operator/v2@v2.1.0 config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml config/crd/bases/sparkoperator.k8s.io_scheduledsparkapplications.yaml"
)

key=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)
cache_root=${NODELIMITS_CRDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodelimits/crds}
out="$cache_root/$key"
log() { printf '[crds %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -f "$out/.complete" ]; then
  log "CRDs cached in $out"
  echo "$out"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: get it from https://go.dev/dl/ and put 'go' on PATH"
  exit 3
fi
mkdir -p "$out"
exec 9>"$out/.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  log "another fetch is running in $out; waiting for it"
  flock 9
  if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
fi

missing=()
for pin in "${PINS[@]}"; do
  read -r module files <<<"$pin"
  # Outside any module: `go mod download` needs no go.mod for an explicit module@version.
  if ! dir=$(cd "$out" && GOFLAGS=-mod=mod go mod download -json "$module" 2>/dev/null \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or ""); sys.exit(1 if d.get("Error") else 0)'); then
    log "not served by the module proxy: $module (its kinds are skipped)"
    missing+=("$module")
    continue
  fi
  for f in $files; do
    cp "$dir/$f" "$out/$(basename "$f")"
    chmod 0644 "$out/$(basename "$f")"
  done
  log "$module: $(wc -w <<<"$files") CRD file(s)"
done
printf '%s\n' "${missing[@]}" >"$out/MISSING"
if [ "$strict" = 1 ] && [ "${#missing[@]}" -gt 0 ]; then
  log "missing: ${missing[*]}"
  exit 1
fi
touch "$out/.complete"
echo "$out"
