# The tiercut worker: one container per edge or cloud device.
#
#   docker build -t tiercut-worker:0.1.0 .
#   docker run --rm -p 50051:50051 -e TIERCUT_TOKEN=... tiercut-worker:0.1.0 --device edge
#
# `tiercut deploy k8s --env FILE` writes the Kubernetes manifests that run this
# image (token from a Secret in $TIERCUT_TOKEN, store on a volume).
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
ENV PATH=/opt/tiercut/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/tiercut
VOLUME ["/var/lib/tiercut"]
EXPOSE 50051
# the same options as `tiercut serve`; the token comes from $TIERCUT_TOKEN. On 0.0.0.0 a token needs
# TLS (--tls-cert/--tls-key/--tls-ca, e.g. a mounted Secret) or an explicit --insecure on a trusted network.
ENTRYPOINT ["python", "-m", "tiercut.runtime"]
CMD ["--device", "edge", "--listen", "0.0.0.0:50051", "--store", "/var/lib/tiercut"]
