# syntax=docker/dockerfile:1
# nodelimits: the admission webhook server (`nodelimits serve`).
#   docker build -t nodelimits:dev .      (base and wheels from the network)
#   make image                            (podman, no Docker engine, no index: docs/install.md)
# Runs as UID/GID 65532 (the chart's runAsUser) with a read-only root filesystem: it writes
# nothing but /tmp (an emptyDir in the chart). Ports: 9443 webhook (TLS), 8080 metrics/probes.

# The release workflow pins the base by digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked runtime dependencies and the package, in a virtualenv -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# WHEELS: a directory of the locked wheels mounted into the build where no index is
# reachable (podman build -v DIR:/wheels:ro --build-arg WHEELS=/wheels); empty: the index.
ARG WHEELS=""
RUN python -m venv /opt/nodelimits
WORKDIR /src
# requirements.image.txt: the lock's pins and hashes for nodelimits[fast] (make lock).
COPY requirements.image.txt ./
RUN /opt/nodelimits/bin/pip install --quiet --require-hashes --no-deps --no-compile \
      ${WHEELS:+--no-index --find-links "$WHEELS"} -r requirements.image.txt
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# The git revision `nodelimits version` reports (webhook/buildinfo.py; the file is untracked).
ARG REVISION=unknown
RUN printf '%s\n' "$REVISION" > webhook/REVISION
# The package (nothing left to resolve); then no pip or setuptools in the venv, and the
# bytecode compiled here, never at run time (the root filesystem is read-only).
RUN /opt/nodelimits/bin/pip install --quiet --no-deps --no-build-isolation --no-compile . \
 && /opt/nodelimits/bin/pip check \
 && /opt/nodelimits/bin/pip uninstall --quiet --yes setuptools pip \
 && /opt/nodelimits/bin/python -m compileall -q -j 0 /opt/nodelimits/lib

# --- runtime: the slim base plus the virtualenv, nothing else ----------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG BASE_DIGEST=""
LABEL org.opencontainers.image.title="nodelimits" \
      org.opencontainers.image.description="Kubernetes validating admission webhook: rejects workloads that can never fit one node of an SCNet / Sugon AC resource group" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/nodelimits/nodelimits" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}"
# The base's own pip, setuptools and wheel are not needed at run time.
RUN if python -m pip --version >/dev/null 2>&1; then \
      PIP_ROOT_USER_ACTION=ignore python -m pip uninstall --quiet --yes pip setuptools wheel; \
    fi
ENV PATH=/opt/nodelimits/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/nodelimits /opt/nodelimits
# A passwd entry for the uid: the kubelet runs it as is (podman invents one, containerd does
# not), and kopf's peering id calls getpass.getuser(), which raises KeyError without one.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-log-init --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin nonroot
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["nodelimits", "serve"]
