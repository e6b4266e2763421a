# mlbox image: resnet50 (tensorflow-fp32, published weights) on cpu with tensorflow.
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
# backend: tensorflow (tensorflow-cpu==2.21.0 absl-py==2.5.1 astunparse==1.6.3 certifi==2026.10.19.post1 charset-normalizer==3.5.3 flatbuffers==25.12.19 gast==0.7.0 google-pasta==0.2.0 grpcio==1.85.3 h5py==3.14.0 idna==3.20 keras==3.15.1 libclang==18.1.1 markdown-it-py==4.3.0 mdurl==0.1.2 ml-dtypes==0.6.0 namex==0.1.0 numpy==2.4.6 opt-einsum==3.4.0 optree==0.20.0 packaging==26.4 protobuf==7.36.2 pygments==2.21.0 requests==2.34.2 rich==15.0.0 setuptools==84.2.1 six==1.17.0 termcolor==3.3.0 typing-extensions==4.16.0 urllib3==2.8.0 wheel==0.48.0 wrapt==2.5.2 pillow==13.0.0 pycocotools==2.0.11)

# The model: its own layer, below the harness code, so a code change never re-copies it.
COPY model/ /opt/mlbox/model/
# Image defaults: the lowest layer of mlbox-bench's settings; -e MLBOX_* or CM_* override them.
ENV MLBOX_DEFAULT_MODEL=resnet50 \
    MLBOX_DEFAULT_TASK=classification \
    MLBOX_DEFAULT_MODELPATH=/opt/mlbox/model/resnet50_v1.pb \
    MLBOX_DEFAULT_MODEL_FORMAT=frozen-graph \
    MLBOX_DEFAULT_WEIGHTS=published \
    MLBOX_DEFAULT_OUTPUT_DIR=/results \
    MLBOX_DEFAULT_DEVICE=cpu \
    MLBOX_DEFAULT_BACKEND=tensorflow

USER 10001:10001
WORKDIR /results
ENTRYPOINT ["mlbox-bench"]

# The harness (mlbox-bench): small, changes most often, so it goes last but for labels:
# a code change rebuilds this layer and the labels, nothing else.
COPY app/ /opt/mlbox/app/

ARG MLBOX_CREATED=unknown
ARG MLBOX_MODEL_SHA256=unknown
LABEL \
      org.opencontainers.image.title="mlbox resnet50 (tensorflow-fp32) on cpu" \
      org.opencontainers.image.description="MLPerf LoadGen benchmark image: ResNet50 v1.5 TensorFlow frozen graph, fp32, NHWC (MLCommons reference weights)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm" \
      mlbox.model="resnet50" \
      mlbox.model.mlperf_name="resnet50" \
      mlbox.model.task="classification" \
      mlbox.variant="tensorflow-fp32" \
      mlbox.model.file="resnet50_v1.pb" \
      mlbox.model.framework="tensorflow" \
      mlbox.model.precision="fp32" \
      mlbox.weights="published" \
      mlbox.weights.source="https://zenodo.org/record/2535873/files/resnet50_v1.pb" \
      mlbox.device="cpu" \
      mlbox.backend="tensorflow" \
      mlbox.backend.packages="tensorflow-cpu==2.21.0 absl-py==2.5.1 astunparse==1.6.3 certifi==2026.10.19.post1 charset-normalizer==3.5.3 flatbuffers==25.12.19 gast==0.7.0 google-pasta==0.2.0 grpcio==1.85.3 h5py==3.14.0 idna==3.20 keras==3.15.1 libclang==18.1.1 markdown-it-py==4.3.0 mdurl==0.1.2 ml-dtypes==0.6.0 namex==0.1.0 numpy==2.4.6 opt-einsum==3.4.0 optree==0.20.0 packaging==26.4 protobuf==7.36.2 pygments==2.21.0 requests==2.34.2 rich==15.0.0 setuptools==84.2.1 six==1.17.0 termcolor==3.3.0 typing-extensions==4.16.0 urllib3==2.8.0 wheel==0.48.0 wrapt==2.5.2 pillow==13.0.0 pycocotools==2.0.11" \
      mlbox.backend.version="2.21.0" \
      mlbox.backend.index="pip's default index" \
      mlbox.loadgen.version="6.0.17" \
      mlbox.loadgen.from="wheel" \
      mlbox.template.sha256="1f1980cdf693696839ccad47b580ad0db9389906d31603488fbaf6c20574cb24" \
      org.opencontainers.image.created="${MLBOX_CREATED}" \
      mlbox.model.sha256="${MLBOX_MODEL_SHA256}"
