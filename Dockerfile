# The operator image: `experiment-operator run` as UID 65532 on a slim Python base.
#
#   docker build -t experiment-operator:0.1.0 .        (or: buildah bud / podman build)
#
# PYTHON_IMAGE may be any image with python3 >= 3.11 and its venv module at the same path in
# both stages; docs/image.md shows how to build one from Debian's packages when no container
# registry is reachable.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- builder: build the wheel and install it, with its dependencies, into a venv -------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (never stored in a layer):
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /opt/experiment-operator \
 && /opt/experiment-operator/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/experiment-operator/bin/pip install /wheels/*.whl \
 && /opt/experiment-operator/bin/pip uninstall --yes pip \
 && /opt/experiment-operator/bin/python -m compileall -q /opt/experiment-operator/lib

# --- final: the interpreter, the venv, nothing to build or install with ----------------------
FROM ${PYTHON_IMAGE}
RUN python3 -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel 2>/dev/null; \
    rm -rf /root/.cache
COPY --from=builder /opt/experiment-operator /opt/experiment-operator
ENV PATH=/opt/experiment-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, so the kubelet can verify runAsNonRoot; it needs no home and no
# writable path (the Deployments mount an emptyDir at /tmp and a read-only root filesystem).
USER 65532:65532
WORKDIR /
EXPOSE 8080 8081
ENTRYPOINT ["experiment-operator", "run"]
