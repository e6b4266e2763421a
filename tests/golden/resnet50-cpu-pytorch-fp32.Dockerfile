# mlbox image: resnet50 (pytorch-fp32, published weights) on cpu with pytorch.
# Rendered by mlbox from dockerfiles/Dockerfile.j2; edit the templates, not this file.
# Builds with the classic builder too (no RUN --mount) and needs no network:
# Python packages come from a wheelhouse resolved on the host, the model is fetched
# and verified on the host. Layers go from least to most often changed.
# ---- deps: the backend's Python packages, installed from the wheelhouse ------------
FROM python:3.11-slim-bookworm AS deps
COPY wheels/ /tmp/wheels/
# pip lives in a throwaway venv of this stage only; the runtime stage gets the packages
# and the lock file (exact versions and sha256 of every wheel) beside them.
RUN python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
       --require-hashes --target /opt/mlbox/deps \
       --find-links /tmp/wheels --requirement /tmp/wheels/requirements.lock \
    && cp /tmp/wheels/requirements.lock /opt/mlbox/deps/requirements.lock

# ---- loadgen: MLPerf LoadGen 6.0.17 --------------------------------------------
FROM deps AS loadgen
COPY loadgen/ /tmp/loadgen/
RUN /tmp/pip/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
       --no-deps --require-hashes --target /opt/mlbox/loadgen \
       --find-links /tmp/loadgen --requirement /tmp/loadgen/requirements.lock \
    && cp /tmp/loadgen/requirements.lock /opt/mlbox/loadgen/requirements.lock

# ---- runtime: no pip, no compilers, no caches; runs as a non-root user -----------------
FROM python:3.11-slim-bookworm AS runtime
# World-writable results dir (sticky) so the image also runs as any --user without a mount.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent mlbox \
    && mkdir -p /results && chmod 1777 /results
COPY --from=deps /opt/mlbox/deps /opt/mlbox/deps
COPY --from=loadgen /opt/mlbox/loadgen /opt/mlbox/loadgen
ENV PYTHONPATH=/opt/mlbox/app:/opt/mlbox/loadgen:/opt/mlbox/deps \
    PATH=/opt/mlbox/app/bin:/opt/mlbox/deps/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# device: cpu
# backend: pytorch (torch==2.13.0+cpu numpy==2.4.6 filelock==4.3.1 fsspec==2026.9.0 jinja2==3.1.6 markupsafe==3.0.4 mpmath==1.3.0 networkx==3.6.1 setuptools==84.2.1 sympy==1.14.0 typing-extensions==4.16.0 pillow==13.0.0 pycocotools==2.0.11)
# PyTorch pins resolved with the extra index https://download.pytorch.org/whl/cpu; the lock file beside them has each sha256.

# The model: its own layer, below the harness code, so a code change never re-copies it.
COPY model/ /opt/mlbox/model/
# Image defaults: the lowest layer of mlbox-bench's settings; -e MLBOX_* or CM_* override them.
ENV MLBOX_DEFAULT_MODEL=resnet50 \
    MLBOX_DEFAULT_TASK=classification \
    MLBOX_DEFAULT_MODELPATH=/opt/mlbox/model/resnet50-19c8e357.pth \
    MLBOX_DEFAULT_MODEL_FORMAT=state-dict \
    MLBOX_DEFAULT_WEIGHTS=published \
    MLBOX_DEFAULT_OUTPUT_DIR=/results \
    MLBOX_DEFAULT_DEVICE=cpu \
    MLBOX_DEFAULT_BACKEND=pytorch

USER 10001:10001
WORKDIR /results
ENTRYPOINT ["mlbox-bench"]

# The harness (mlbox-bench): small, changes most often, so it goes last but for labels:
# a code change rebuilds this layer and the labels, nothing else.
COPY app/ /opt/mlbox/app/

ARG MLBOX_CREATED=unknown
ARG MLBOX_MODEL_SHA256=unknown
LABEL \
      org.opencontainers.image.title="mlbox resnet50 (pytorch-fp32) on cpu" \
      org.opencontainers.image.description="MLPerf LoadGen benchmark image: ResNet50 v1.5 PyTorch, fp32 (torchvision weights, a state dict)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm" \
      mlbox.model="resnet50" \
      mlbox.model.mlperf_name="resnet50" \
      mlbox.model.task="classification" \
      mlbox.variant="pytorch-fp32" \
      mlbox.model.file="resnet50-19c8e357.pth" \
      mlbox.model.framework="pytorch" \
      mlbox.model.precision="fp32" \
      mlbox.weights="published" \
      mlbox.weights.source="https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth" \
      mlbox.device="cpu" \
      mlbox.backend="pytorch" \
      mlbox.backend.packages="torch==2.13.0+cpu numpy==2.4.6 filelock==4.3.1 fsspec==2026.9.0 jinja2==3.1.6 markupsafe==3.0.4 mpmath==1.3.0 networkx==3.6.1 setuptools==84.2.1 sympy==1.14.0 typing-extensions==4.16.0 pillow==13.0.0 pycocotools==2.0.11" \
      mlbox.backend.version="2.13.0+cpu" \
      mlbox.backend.index="https://download.pytorch.org/whl/cpu" \
      mlbox.loadgen.version="6.0.17" \
      mlbox.loadgen.from="wheel" \
      mlbox.template.sha256="1f1980cdf693696839ccad47b580ad0db9389906d31603488fbaf6c20574cb24" \
      org.opencontainers.image.created="${MLBOX_CREATED}" \
      mlbox.model.sha256="${MLBOX_MODEL_SHA256}"
