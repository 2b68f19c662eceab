# The tiercut worker: one container per edge or cloud device.
#
#   docker build -t tiercut-worker:0.1.0 .
#
# The worker listens on 0.0.0.0:50051 in the container ($TIERCUT_LISTEN), so a
# published port reaches it, and it refuses to start there without mutual TLS
# (a token alone would cross the network in clear). Mount a folder holding
# tls.crt, tls.key and ca.crt (the names of a Kubernetes TLS Secret; the key
# readable by uid 10001) and give the token too:
#
#   docker run --rm -p 50051:50051 -p 50052:50052 \
#     -v "$PWD/tls:/etc/tiercut-tls:ro" -e TIERCUT_TOKEN="$(cat token)" \
#     tiercut-worker:0.1.0 --device edge --tls-dir /etc/tiercut-tls
#
# On a trusted network only (the token travels in clear), a token without TLS:
#
#   docker run --rm -p 50051:50051 -e TIERCUT_TOKEN="$(cat token)" tiercut-worker:0.1.0 --device edge --insecure
#
# Port 50052 ($TIERCUT_HEALTH_LISTEN) serves only the standard gRPC health
# service (grpc.health.v1 Check, plaintext, no data): probes such as
# Kubernetes' gRPC probe or grpc_health_probe ask it whether the worker serves.
# Torch runs one intra-op thread per CPU the container may use (its cpuset and
# its --cpus quota; --torch-threads overrides).
#
# `tiercut deploy k8s --env FILE` writes the Kubernetes manifests that run this
# image (token from a Secret in $TIERCUT_TOKEN, store on a volume, TLS from a
# Secret with --tls-secret, gRPC probes on the health port).
# CPU-only torch from the PyTorch CPU wheel index keeps the image small.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tiercut
ENV PATH=/opt/tiercut/bin:$PATH
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<3" "torchvision>=0.19,<1"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 tiercut \
    && useradd --system --uid 10001 --gid tiercut --home-dir /var/lib/tiercut --shell /usr/sbin/nologin tiercut \
    && mkdir -p /var/lib/tiercut \
    && chown tiercut:tiercut /var/lib/tiercut
COPY --from=build /opt/tiercut /opt/tiercut
# where the worker listens, its health port and its store, whatever arguments `docker run` gives
ENV PATH=/opt/tiercut/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TIERCUT_LISTEN=0.0.0.0:50051 \
    TIERCUT_HEALTH_LISTEN=0.0.0.0:50052 \
    TIERCUT_STORE=/var/lib/tiercut
USER 10001:10001
WORKDIR /var/lib/tiercut
VOLUME ["/var/lib/tiercut"]
EXPOSE 50051 50052
# the same options as `tiercut serve`; the token comes from $TIERCUT_TOKEN. On 0.0.0.0 a token needs
# TLS (--tls-dir, e.g. a mounted Secret) or an explicit --insecure on a trusted network.
ENTRYPOINT ["python", "-m", "tiercut.runtime"]
CMD ["--device", "edge"]
