# Two images from one wheel:
#   docker build -t recprep:0.1.0 .
#     the default (last stage, `runtime`): the recprep operator, the Dask scheduler and workers
#     (`dask scheduler`, `dask worker` come with distributed), the ISP-emulation workers, the
#     driver and the shard service (`recprep serve`);
#   docker build --target trainer -t recprep-train:0.1.0 .
#     `recprep train` for GPU trainers (examples/trainer-job.yaml): recprep with the train
#     extra, whose torch==2.13.0 comes from PyPI as its default Linux wheel, the CUDA build.

# ---- builder: build the project's wheel (no dependencies; they come from PyPI below) ----
# The full image has the C compiler and Python headers the wheel's kernels need
# (recprep/workloads/**/_*.c); the runtime images below have no compiler.
FROM python:3.11 AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY recprep ./recprep
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

# ---- base: what both runtime images share (environment, the non-root user) ----
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DASK_TEMPORARY_DIRECTORY=/tmp
RUN groupadd --system --gid 10001 recprep \
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
