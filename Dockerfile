# Deskmail: one image for every stage. Each Deployment picks its stage with
# args (`deskmail fetcher`, `deskmail parser`, ..., `deskmail migrate`).
#
# Both stages must use the same base image: the venv's python is a symlink to
# the base image's interpreter, so it is only valid on an identical layout.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: resolve and install the package and its dependencies into a venv
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

# Only what `pip install .` needs; .dockerignore keeps everything else
# (tests, deploy manifests, local data, .env files) out of the context.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services

# Build a wheel first so that the venv receives an installed distribution,
# never a reference to /src (which does not exist in the final image).
# pip compiles .pyc files at install time; that matters because the pods run
# with a read-only root filesystem and could not write them later.
# The smoke test proves the console script resolves; then pip and setuptools
# leave the venv (about 25 MB that nothing needs at run time).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip install --no-cache-dir /wheels/*.whl \
 && deskmail --help >/dev/null \
 && python -m pip uninstall --yes pip setuptools

# --- final: the interpreter from the slim image plus the venv, nothing else
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="deskmail" \
      org.opencontainers.image.description="Help-desk mail intake: IMAP/POP3 mailboxes into help-desk requests"

# Numeric UID/GID so that Kubernetes can verify runAsNonRoot without looking
# up a user name in the image.
RUN groupadd --system --gid 10001 deskmail \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin deskmail

COPY --from=builder /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes.
# PYTHONUNBUFFERED: structured log lines reach the container log at once.
# DESKMAIL_DATA_DIR: only the embedded mode writes there; point it at the
# writable /tmp (an emptyDir in the manifests) rather than the read-only cwd.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DESKMAIL_DATA_DIR=/tmp/deskmail

WORKDIR /tmp
USER 10001:10001

# 8000: admin web (`deskmail web`); 9100: /healthz, /readyz, /metrics.
EXPOSE 8000 9100

ENTRYPOINT ["deskmail"]
