# recognizer's container image.
#
#   podman build -t recognizer .                  # CPU (the default target)
#   podman build -t recognizer:gpu --target gpu . # CUDA nodes
#   podman run --init -p 50051:50051 -p 9090:9090 recognizer
#
# Ports: 50051 gRPC (Recognizer, grpc.health.v1.Health, reflection); 9090 Prometheus
# /metrics. Settings: any RECOGNIZER_* variable (README, "Configuration"), or flags after
# the image name. The default model's weights are in the image: nothing is downloaded.
# Build arguments: BASE (a Debian bookworm image with Python 3.11), TORCH_PACKAGES and
# TORCH_INDEX_URL (where the CPU target's torch comes from); the builder's own pip
# settings may be passed as PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS,
# PIP_CONSTRAINT, and its CA bundle as the secret `pip-cert` (deploy/README.md).

ARG BASE=python:3.11-slim-bookworm

# A virtual environment and a pip that applies the pins (deploy/image/constraints.txt).
FROM ${BASE} AS venv
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ARG PIP_CONSTRAINT=
# Kept in the build stages only: the runtime stages start again from BASE.
ENV PIP_INDEX_URL=$PIP_INDEX_URL PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL \
    PIP_FIND_LINKS=$PIP_FIND_LINKS PIP_CONSTRAINT=$PIP_CONSTRAINT \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/recognizer
COPY deploy/image/constraints.txt deploy/image/pip deploy/image/requirements.py /build/

# Every dependency, torch first (the largest layer, which changes least); not recognizer.
# CPU: PyTorch's CPU-only wheels (a fraction of the size of PyPI's build, which bundles CUDA).
FROM venv AS deps-cpu
ARG TORCH_PACKAGES="torch==2.14.1+cpu torchvision==0.29.1+cpu"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=secret,id=pip-cert \
    /build/pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} $TORCH_PACKAGES
COPY pyproject.toml /build/
RUN --mount=type=secret,id=pip-cert python3 /build/requirements.py /build/pyproject.toml \
        > /build/requirements.txt && /build/pip install -r /build/requirements.txt

# GPU: PyPI's torch, which brings the CUDA libraries as wheels: the node needs only its
# driver, which the NVIDIA container toolkit mounts.
FROM venv AS deps-gpu
RUN --mount=type=secret,id=pip-cert /build/pip install "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml /build/
RUN --mount=type=secret,id=pip-cert python3 /build/requirements.py /build/pyproject.toml \
        > /build/requirements.txt && /build/pip install -r /build/requirements.txt

# recognizer's wheel; the build generates the gRPC stubs from proto/.
FROM venv AS wheel
COPY pyproject.toml hatch_build.py README.md LICENSE /src/
COPY proto /src/proto
COPY src /src/src
RUN --mount=type=secret,id=pip-cert /build/pip wheel --no-deps --wheel-dir /wheels /src

# What both targets run: the same slim base, and a user that owns nothing.
FROM ${BASE} AS runtime
RUN groupadd --gid 10001 recognizer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin recognizer
ENV PATH=/opt/recognizer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    RECOGNIZER_PORT=50051 \
    RECOGNIZER_METRICS_PORT=9090 \
    RECOGNIZER_METRICS_HOST=0.0.0.0
# Metrics on their own port, on every interface of the container, for Prometheus to scrape.
EXPOSE 50051 9090
# gRPC health, as Kubernetes' probes ask it; the first start converts and checks the model.
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --retries=3 \
    CMD recognizer health --server "127.0.0.1:${RECOGNIZER_PORT}" --timeout 5
# The server drains on SIGTERM itself; `--init` (or Kubernetes) reaps anything else.
ENTRYPOINT ["recognizer", "serve", "--host", "0.0.0.0"]
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="recognizer" \
      org.opencontainers.image.description="A gRPC image-recognition microservice" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM runtime AS gpu
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=deps-gpu /opt/recognizer /opt/recognizer
COPY --from=wheel /wheels/*.whl /tmp/wheels/
RUN /opt/recognizer/bin/pip install --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
USER 10001:10001

FROM runtime AS cpu
ENV RECOGNIZER_DEVICE=cpu
COPY --from=deps-cpu /opt/recognizer /opt/recognizer
COPY --from=wheel /wheels/*.whl /tmp/wheels/
RUN /opt/recognizer/bin/pip install --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
USER 10001:10001
