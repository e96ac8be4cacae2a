# syntax=docker/dockerfile:1
# AI From Scratch to Scale — GPU runtime (docs/containers.md). Stages:
#   base       CUDA 13.0 `base` image (the CUDA of the lock's torch 2.14 cu130 build; torch's wheels
#              bring the CUDA libraries and cuDNN themselves), Python, pinned Poetry with the
#              simple-index plugin, an empty venv in /opt/venv
#   deps-prod  only pyproject.toml + poetry.lock, then every group except dev  } code edits never
#   deps-dev   only pyproject.toml + poetry.lock, then every group             } reinstall these
#   dev        the source (editable), JupyterLab on :8888 with a token, run as the checkout's owner
#              (the non-root `learner`, or root for a root-owned checkout: docker/workspace-entrypoint)
#   prod       the source, non-root `runner`: headless notebooks (papermill) and the `scratch` CLI
ARG CUDA_IMAGE=nvidia/cuda:13.0.3-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS base
ARG POETRY_VERSION=2.5.1
# VIRTUAL_ENV + virtualenvs.create=false: Poetry installs into /opt/venv (outside /workspace, so a
# bind mount of the code never hides it). VENV and POETRY are read by the Makefile, so `make doctor`
# and `make test` work inside the container without installing another Poetry.
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
    POETRY=/opt/poetry/bin/poetry \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Every locked package ships a wheel for this Python, so no compiler or headers are needed.
# apt-get clean: Ubuntu's image drops apt's caches by itself; other Debian bases keep ~140 MB.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make git curl ca-certificates tini \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# Poetry in its own venv, with the plugin that lets it use simple-API-only package mirrors (the
# plugin is copied first: it changes less often than the lock). Only `poetry` goes on the PATH.
COPY tools/poetry-plugin-simple-index /opt/poetry-plugin-simple-index
RUN python3 -m venv /opt/poetry \
 && /opt/poetry/bin/pip install "poetry==${POETRY_VERSION}" /opt/poetry-plugin-simple-index \
 && ln -s /opt/poetry/bin/poetry /usr/local/bin/poetry \
 && poetry self show plugins | grep -F poetry-plugin-simple-index \
 && python3 -m venv /opt/venv
WORKDIR /workspace

FROM base AS deps-prod
COPY pyproject.toml poetry.lock poetry.toml ./
# Every group but dev: any notebook runs headless (module groups, papermill, wandb); no test tools.
RUN poetry install --no-root --with notebooks,tracking,foundations,cnn,detection,sequence,generative,modern \
 && rm -rf "$POETRY_CACHE_DIR"

FROM base AS deps-dev
ARG LEARNER=learner
ARG LEARNER_UID=1000
# The learner owns the venv (still empty here, so the chown is cheap): `make test`, `make lint` and
# `poetry install` then work inside the container. Ubuntu 24.04 images ship a user with UID 1000;
# it gives way to the learner. ~/.cache exists so the compose cache volume starts learner-owned.
RUN (userdel -r ubuntu 2>/dev/null || true) \
 && useradd --no-log-init --create-home --uid "${LEARNER_UID}" --shell /bin/bash "${LEARNER}" \
 && install -d -o "${LEARNER}" -g "${LEARNER}" "/home/${LEARNER}/.cache" \
    /workspace/data /workspace/outputs /workspace/wandb \
 && chown -R "${LEARNER}:${LEARNER}" /opt/venv /workspace
USER ${LEARNER}
COPY --chown=${LEARNER}:${LEARNER} pyproject.toml poetry.lock poetry.toml ./
RUN poetry install --no-root --all-groups && rm -rf "$POETRY_CACHE_DIR"

FROM deps-dev AS dev
ARG LEARNER=learner
# The entrypoint runs the command as the owner of the checkout mounted at /workspace: as the learner
# when it owns it (the usual case), else through sudo, whose one rule lets the learner run just the
# entrypoint, which then takes the owner's UID (root for a root-owned checkout). Both files are
# root's: the learner cannot change what sudo runs.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends sudo \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY docker/workspace-entrypoint /usr/local/bin/workspace-entrypoint
COPY docker/sudoers /etc/sudoers.d/workspace-entrypoint
RUN chmod 0755 /usr/local/bin/workspace-entrypoint \
 && chmod 0440 /etc/sudoers.d/workspace-entrypoint \
 && visudo -c
USER ${LEARNER}
# HOME for every process, `docker exec` included (Docker would give a root-owned checkout's learner,
# UID 0, root's /root): the cache volume is mounted in the learner's home.
ENV HOME=/home/${LEARNER}
COPY --chown=${LEARNER}:${LEARNER} . .
# Installs only the project itself (editable): the dependency layers above stay cached.
RUN poetry install --all-groups && rm -rf "$POETRY_CACHE_DIR"
EXPOSE 8888
# /api answers without a token; it proves the server is up, not that anyone is logged in.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8888/api"]
ENTRYPOINT ["workspace-entrypoint"]
# Token authentication stays on: JupyterLab uses $JUPYTER_TOKEN, or (when it is empty or unset)
# makes a random one and prints the login URL in `docker compose logs`. allow_root only matters for
# a root-owned checkout, where the entrypoint runs JupyterLab as root (JupyterLab refuses otherwise).
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/workspace", "--ServerApp.allow_root=True"]

FROM deps-prod AS prod
ARG RUNNER=runner
ARG RUNNER_UID=1000
RUN (userdel -r ubuntu 2>/dev/null || true) \
 && useradd --no-log-init --create-home --uid "${RUNNER_UID}" --shell /bin/bash "${RUNNER}" \
 && install -d -o "${RUNNER}" -g "${RUNNER}" /workspace/data /workspace/outputs
# The source and the venv stay root-owned: the runner writes only data/ and outputs/.
COPY . .
RUN poetry install --only-root && rm -rf "$POETRY_CACHE_DIR"
USER ${RUNNER}
ENTRYPOINT ["tini", "--"]
# e.g. docker run --rm --gpus all IMAGE papermill 01-Foundations/01_perceptron.ipynb \
#        outputs/perceptron.ipynb --cwd 01-Foundations -p FULL True
CMD ["scratch", "doctor"]
