# syntax=docker/dockerfile:1
# AI From Scratch to Scale — GPU runtime. Stages:
#   base  CUDA 13.0 runtime + cuDNN (matches the lock's torch 2.14 cu130 build), Python, pinned Poetry
#   deps-prod / deps-dev   dependency layers: only pyproject.toml + poetry.lock are copied first, so
#                          editing code never reinstalls dependencies
#   dev   every dependency group, JupyterLab on :8888 with a token, non-root user  (docker compose up)
#   prod  the minimum to run notebooks headless (papermill) and the `scratch` CLI — no dev tools
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS base
ARG POETRY_VERSION=2.5.1
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POETRY_NO_INTERACTION=1 \
    POETRY_VIRTUALENVS_CREATE=false \
    POETRY_CACHE_DIR=/tmp/poetry-cache \
    VIRTUAL_ENV=/opt/venv \
    VENV=/opt/venv \
    POETRY=poetry \
    PATH=/opt/venv/bin:/opt/poetry/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev make git curl ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
# Poetry in its own venv, with the plugin that lets it use simple-API-only package mirrors.
COPY tools/poetry-plugin-simple-index /opt/poetry-plugin-simple-index
RUN python3 -m venv /opt/poetry \
 && /opt/poetry/bin/pip install "poetry==${POETRY_VERSION}" /opt/poetry-plugin-simple-index \
 && python3 -m venv /opt/venv
WORKDIR /workspace

FROM base AS deps-prod
COPY pyproject.toml poetry.lock poetry.toml ./
RUN poetry install --no-root --with notebooks && rm -rf "$POETRY_CACHE_DIR"

FROM base AS deps-dev
COPY pyproject.toml poetry.lock poetry.toml ./
RUN poetry install --no-root --all-groups && rm -rf "$POETRY_CACHE_DIR"

FROM deps-dev AS dev
ARG LEARNER=learner
ARG LEARNER_UID=1000
# Ubuntu 24.04 images ship a user with UID 1000; give that UID to our learner instead.
RUN (userdel -r ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid "${LEARNER_UID}" --shell /bin/bash "${LEARNER}" \
 && mkdir -p /workspace/data /workspace/outputs /workspace/wandb \
 && chown -R "${LEARNER}:${LEARNER}" /workspace
COPY --chown=${LEARNER}:${LEARNER} . .
# Installs only the project itself (editable): the dependency layers above stay cached.
RUN poetry install --all-groups && rm -rf "$POETRY_CACHE_DIR"
USER ${LEARNER}
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8888/api"]
ENTRYPOINT ["tini", "--"]
# Token authentication stays on: JupyterLab uses $JUPYTER_TOKEN, or makes a random one and prints
# the login URL in `docker compose logs`.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/workspace"]

FROM deps-prod AS prod
ARG RUNNER=runner
ARG RUNNER_UID=1000
RUN (userdel -r ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid "${RUNNER_UID}" --shell /bin/bash "${RUNNER}"
COPY --chown=${RUNNER}:${RUNNER} . .
RUN poetry install --only-root && rm -rf "$POETRY_CACHE_DIR" \
 && mkdir -p /workspace/data /workspace/outputs && chown -R "${RUNNER}:${RUNNER}" /workspace
USER ${RUNNER}
ENTRYPOINT ["tini", "--"]
# e.g. docker run --gpus all IMAGE papermill 01-Foundations/01_perceptron.ipynb out.ipynb -p FULL True
CMD ["scratch", "doctor"]
