# Two images from one wheel:
#   docker build -t recprep:0.1.0 .
#     the default (last stage, `runtime`): the recprep operator, the Dask scheduler and workers
#     (`dask scheduler`, `dask worker` come with distributed), the ISP-emulation workers, the
#     driver and the shard service (`recprep serve`);
#   docker build --target trainer -t recprep-train:0.1.0 .
#     `recprep train` for GPU trainers (examples/trainer-job.yaml): recprep with the train
#     extra, whose torch==2.13.0 comes from PyPI as its default Linux wheel, the CUDA build.
#
# BASE is the root filesystem every stage starts from: the official Python image users pull by
# default, or any Debian-family image with python3 (and its venv module) and apt, such as the one
# `docker/build-image.sh` makes from Debian's packages alone (`--build-arg BASE=...`). Nothing here
# relies on the official image's own Python: recprep and its dependencies live in a virtual
# environment, /opt/recprep, on PATH.
ARG BASE=python:3.11-slim

# ---- builder: build the project's wheel (no dependencies; they come from PyPI below) ----
# The wheel's kernels (recprep/workloads/**/_*.c) need a C compiler and Python's headers: the
# official slim image has the headers and no compiler, a bare Debian image neither. The runtime
# images below have no compiler.
FROM ${BASE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
# (Debian's packages at the base's own release: nothing to pin them to beyond it.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if ! python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then \
        apt-get install -y --no-install-recommends python3-dev; \
    fi \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY recprep ./recprep
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps -w /wheels .

# ---- base: what both runtime images share (environment, the venv, the non-root user) ----
FROM ${BASE} AS base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DASK_TEMPORARY_DIRECTORY=/tmp \
    VIRTUAL_ENV=/opt/recprep \
    PATH=/opt/recprep/bin:$PATH
RUN python3 -m venv /opt/recprep \
    && groupadd --system --gid 10001 recprep \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin recprep
WORKDIR /tmp

# ---- trainer: the wheel with the train extra (torch), for `recprep train` ----
FROM base AS trainer
ARG RECPREP_VERSION=0.1.0
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "recprep[train]==${RECPREP_VERSION}" \
    && rm -rf /wheels
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001
ENTRYPOINT ["recprep"]
CMD ["train", "--help"]

# ---- runtime (the default): the wheel with the operator, dashboard and cloud (object-store sources)
# extras, nothing else from the source tree ----
FROM base AS runtime
ARG RECPREP_VERSION=0.1.0
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "recprep[operator,dashboard,cloud]==${RECPREP_VERSION}" \
    && rm -rf /wheels
USER 10001
ENTRYPOINT ["recprep"]
CMD ["--help"]
