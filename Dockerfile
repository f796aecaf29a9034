# One image for the recprep operator, the Dask scheduler and workers (`dask scheduler`,
# `dask worker` come with distributed), the ISP-emulation workers and the driver.
#   docker build -t recprep:0.1.0 .

# ---- builder: build the project's wheel (no dependencies; they come from PyPI below) ----
# The full image has the C compiler and Python headers the wheel's kernels need
# (recprep/workloads/**/_*.c); the runtime image below has no compiler.
FROM python:3.11 AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY recprep ./recprep
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

# ---- runtime: the wheel with the operator extra, nothing else from the source tree ----
FROM python:3.11-slim
ARG RECPREP_VERSION=0.1.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DASK_TEMPORARY_DIRECTORY=/tmp
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "recprep[operator]==${RECPREP_VERSION}" \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 recprep \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin recprep
WORKDIR /tmp
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001
ENTRYPOINT ["recprep"]
CMD ["--help"]
