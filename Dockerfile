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

# The super-resolution runtime links libvulkan and libomp even on the CPU (see the Makefile's sr-libs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvulkan1 libomp5 \
    && rm -rf /var/lib/apt/lists/*

# A system user without a login runs everything; ./data holds local storage and SQLite when those are used.
# The SR runtime goes in with --no-deps, as in the Makefile: it would pull a second OpenCV.
COPY . .
RUN pip install . \
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
