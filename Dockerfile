# Container image of openvpn-exporter: a small, non-root sidecar that reads the status files OpenVPN
# writes into a volume shared with it (conventionally an emptyDir mounted at /run/openvpn).
#
# Build (BuildKit; the secret hands pip a CA bundle when the build host needs one, and leaves nothing
# in the image):
#   DOCKER_BUILDKIT=1 docker build --network host \
#       --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t openvpn-exporter:1.0.0 .
#
# Two stages. The builder installs Debian's python3, builds the venv, then runs the exporter the ways a
# pod runs it and assembles /rootfs from its own installed packages: the interpreter, the stdlib modules
# the exporter imported, the shared libraries those need, the venv, CA certificates and tzdata
# (image/rootfs.py). The final stage is that tree alone, on scratch: no shell, no apt, no dpkg.
# Security fixes of Debian's packages are a rebuild: `docker build --pull --no-cache` (see README).
#
# The release pins the base by digest: --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:... and
# --build-arg BASE_DIGEST=sha256:... (both end up in the labels).

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# The python3 metapackage version is fixed for bookworm's lifetime; security fixes land in python3.11,
# which it pulls in at its current version. ca-certificates and tzdata are not pinned on purpose: they
# must follow the archive (tzdata changes with the world's time zones), and a pinned version would
# vanish from it and break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
        ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*

# The runtime dependencies first, from pyproject.toml alone, so that a change to the code reuses this
# layer. The build backend goes into the venv too (the package is built without isolation below), and
# is removed again with pip once the package is in.
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/openvpn-exporter \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/tmp/requirements.txt \
    && /opt/openvpn-exporter/bin/pip install --no-cache-dir "setuptools>=68" -r /tmp/requirements.txt

# Then the package itself (.dockerignore lets only the package, its metadata and the image script
# through). The bytecode is compiled here, "unchecked-hash": the read-only root filesystem means Python
# could not cache it later, and the image never changes under it. The venv's activate scripts are for
# shells, which the image has none of.
COPY . /src
RUN /opt/openvpn-exporter/bin/pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && /opt/openvpn-exporter/bin/pip uninstall --yes pip setuptools \
    && rm -f /opt/openvpn-exporter/bin/activate* /opt/openvpn-exporter/bin/Activate.ps1 \
    && python3 -m compileall -q -f --invalidation-mode unchecked-hash /opt/openvpn-exporter/lib \
    && /opt/openvpn-exporter/bin/openvpn-exporter --version \
    && python3 /src/image/rootfs.py /opt/openvpn-exporter /rootfs /src/examples/udp.status

FROM scratch

COPY --from=builder /rootfs /

ENV PATH=/opt/openvpn-exporter/bin:/usr/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes can verify runAsNonRoot; 65532 is the usual "nonroot" ID.
USER 65532:65532
WORKDIR /etc/openvpn-exporter
EXPOSE 9234

# Last, so that a new revision or date does not invalidate the cached layers above.
ARG BASE_IMAGE
ARG BASE_DIGEST=
ARG VERSION=1.0.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="openvpn-exporter" \
      org.opencontainers.image.description="Prometheus exporter for OpenVPN servers, run as a sidecar beside OpenVPN" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}"

ENTRYPOINT ["openvpn-exporter"]
CMD ["--config.file=/etc/openvpn-exporter/exporter.yaml"]
