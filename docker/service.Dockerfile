# syntax=docker/dockerfile:1.7
# radgpt service image: Kafka workers + review/audit HTTP API (`radgpt serve`).
#
# Core install only: no `local`/`train` extras, so no torch, transformers or model weights.
# The model runs in a separate model server (TGI or vLLM, see helm/radgpt).
#
# Build (from the repository root):
#   docker build -f docker/service.Dockerfile \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     -t registry.hospital.example/radgpt/radgpt-service:0.1.0 .
#
# Build arguments:
#   PYTHON_IMAGE  base image for both stages (pin a digest in your registry mirror)
#   VERSION       image version label (org.opencontainers.image.version)
#   REVISION      source revision label (org.opencontainers.image.revision)
#   CREATED       build timestamp label, RFC 3339 (org.opencontainers.image.created)
#   PIP_INDEX_URL package index for the build stage (a hospital mirror)
#   APP_UID       numeric user/group id the service runs as (default 10001)

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY integration ./integration
COPY inference ./inference
COPY training ./training
# Build the wheel, install it with its core dependencies into a self-contained venv, and fail
# the build if torch slipped in through a dependency.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/radgpt \
 && /opt/radgpt/bin/pip install /wheels/radgpt-*.whl \
 && if /opt/radgpt/bin/python -c "import torch" 2>/dev/null; then \
      echo "torch must not be in the service image" >&2; exit 1; \
    fi \
 && /opt/radgpt/bin/radgpt version

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG APP_UID=10001
LABEL org.opencontainers.image.title="radgpt-service" \
      org.opencontainers.image.description="HL7 v2 / FHIR R4 radiology IMPRESSION drafting service (Kafka workers + review API)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/radgpt/radgpt"
RUN groupadd --system --gid "${APP_UID}" radgpt \
 && useradd --system --uid "${APP_UID}" --gid "${APP_UID}" --no-create-home \
      --home-dir /tmp --shell /usr/sbin/nologin radgpt
COPY --from=build /opt/radgpt /opt/radgpt
# Read-only root filesystem: bytecode was compiled at install time, and everything that
# writes (HOME, caches, temp files) points at /tmp, an emptyDir in Kubernetes.
# No HF_HUB_OFFLINE here: huggingface_hub then refuses every request, including those to the
# hospital's own model server; the service never downloads models, and sends no cached token.
ENV PATH=/opt/radgpt/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_IMPLICIT_TOKEN=1 \
    RADGPT_ENVIRONMENT=production \
    RADGPT_API__HOST=0.0.0.0 \
    RADGPT_API__PORT=8000
WORKDIR /tmp
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
ENTRYPOINT ["radgpt"]
CMD ["serve"]
