# syntax=docker/dockerfile:1
# nodelimits: the admission webhook server (`nodelimits serve`).
#   docker build -t nodelimits:dev .
# Runs as UID/GID 65532 (the chart's runAsUser) with a read-only root filesystem: it writes
# nothing but /tmp (an emptyDir in the chart). Ports: 9443 webhook (TLS), 8080 metrics/probes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its runtime dependencies into a virtualenv --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/nodelimits
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Runtime dependencies only (no [dev] extra); bytecode compiled here, never at run time.
RUN /opt/nodelimits/bin/pip install --no-compile . \
 && /opt/nodelimits/bin/python -m compileall -q /opt/nodelimits/lib

# --- runtime: the slim base plus the virtualenv, nothing else ----------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nodelimits" \
      org.opencontainers.image.description="Kubernetes validating admission webhook: rejects workloads that can never fit one node of an SCNet / Sugon AC resource group" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/nodelimits/nodelimits" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
ENV PATH=/opt/nodelimits/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/nodelimits /opt/nodelimits
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["nodelimits", "serve"]
