# mlbox image: resnet50 (onnx-opset8-fp32, published weights) on cuda with onnxruntime.
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
# device: cuda (pip: NVIDIA's CUDA/cuDNN wheels, no NVIDIA base image)
# The NVIDIA container runtime reads these; `mlbox run` passes --gpus all for cuda images.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# onnxruntime-gpu dlopens CUDA and cuDNN: point the loader at the wheels' libraries.
ENV LD_LIBRARY_PATH=/opt/mlbox/deps/nvidia/cu13/lib:/opt/mlbox/deps/nvidia/cudnn/lib
# backend: onnxruntime (onnxruntime-gpu==1.31.1 numpy==2.4.6 protobuf==7.36.2 flatbuffers==25.12.19 packaging==26.3 nvidia-cuda-runtime==13.5.37 nvidia-cuda-nvrtc==13.5.37 nvidia-nvjitlink==13.5.37 nvidia-cublas==13.10.0.20 nvidia-cufft==12.5.0.14 nvidia-curand==10.4.5.25 nvidia-cudnn-cu13==9.28.1.4 pillow==13.0.0 pycocotools==2.0.11)

# The model: its own layer, below the harness code, so a code change never re-copies it.
COPY model/ /opt/mlbox/model/
# Image defaults: the lowest layer of mlbox-bench's settings; -e MLBOX_* or CM_* override them.
ENV MLBOX_DEFAULT_MODEL=resnet50 \
    MLBOX_DEFAULT_TASK=classification \
    MLBOX_DEFAULT_MODELPATH=/opt/mlbox/model/resnet50_v1.onnx \
    MLBOX_DEFAULT_MODEL_FORMAT=onnx \
    MLBOX_DEFAULT_WEIGHTS=published \
    MLBOX_DEFAULT_OUTPUT_DIR=/results \
    MLBOX_DEFAULT_DEVICE=cuda \
    MLBOX_DEFAULT_BACKEND=onnxruntime \
    MLBOX_DEFAULT_EP=CUDAExecutionProvider \
    MLBOX_DEFAULT_EP_OPTIONS=prefer_nhwc=1

USER 10001:10001
WORKDIR /results
ENTRYPOINT ["mlbox-bench"]

# The harness (mlbox-bench): small, changes most often, so it goes last but for labels:
# a code change rebuilds this layer and the labels, nothing else.
COPY app/ /opt/mlbox/app/

ARG MLBOX_CREATED=unknown
ARG MLBOX_MODEL_SHA256=unknown
LABEL \
      org.opencontainers.image.title="mlbox resnet50 (onnx-opset8-fp32) on cuda" \
      org.opencontainers.image.description="MLPerf LoadGen benchmark image: ResNet50 v1.5 ONNX opset 8, fp32 (MLCommons reference weights)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm" \
      mlbox.model="resnet50" \
      mlbox.model.mlperf_name="resnet50" \
      mlbox.model.task="classification" \
      mlbox.variant="onnx-opset8-fp32" \
      mlbox.model.file="resnet50_v1.onnx" \
      mlbox.model.framework="onnx" \
      mlbox.model.precision="fp32" \
      mlbox.weights="published" \
      mlbox.weights.source="https://zenodo.org/record/2592612/files/resnet50_v1.onnx" \
      mlbox.device="cuda" \
      mlbox.backend="onnxruntime" \
      mlbox.backend.packages="onnxruntime-gpu==1.31.1 numpy==2.4.6 protobuf==7.36.2 flatbuffers==25.12.19 packaging==26.3 nvidia-cuda-runtime==13.5.37 nvidia-cuda-nvrtc==13.5.37 nvidia-nvjitlink==13.5.37 nvidia-cublas==13.10.0.20 nvidia-cufft==12.5.0.14 nvidia-curand==10.4.5.25 nvidia-cudnn-cu13==9.28.1.4 pillow==13.0.0 pycocotools==2.0.11" \
      mlbox.backend.version="1.31.1" \
      mlbox.backend.index="pip's default index" \
      mlbox.loadgen.version="6.0.17" \
      mlbox.loadgen.from="wheel" \
      mlbox.cuda.from="pip" \
      mlbox.template.sha256="1f1980cdf693696839ccad47b580ad0db9389906d31603488fbaf6c20574cb24" \
      org.opencontainers.image.created="${MLBOX_CREATED}" \
      mlbox.model.sha256="${MLBOX_MODEL_SHA256}"
