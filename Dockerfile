# Keras model server: gunicorn + Flask, TensorFlow CPU. Serves every model in /app/models.

# The slim image (`docker build --target litert .`): no TensorFlow or Keras, serves .tflite files only, on LiteRT
# (docs/optimize.md); mount them at /app/models. The default target is the full server, the last stage below.
FROM python:3.11-slim AS litert

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    SERVING_MODEL_DIR=/app/models

WORKDIR /app

# The runtime lock less comments, TensorFlow, Keras and the packages only they use (one pin a word).
COPY requirements.txt .
# hadolint ignore=SC2046
RUN pip install --no-deps $(grep -v -i -E '^(#|(tensorflow_cpu|keras|tf_keras|h5py|astunparse|gast|google-pasta|libclang|namex|optree|opt_einsum|termcolor|wrapt|rich|markdown-it-py|mdurl|Pygments)==)' requirements.txt)

RUN groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --home-dir /app --shell /usr/sbin/nologin serving \
    && mkdir -p /app/models && chown 10001:10001 /app/models

COPY --chown=10001:10001 app/ app/
COPY --chown=10001:10001 wsgi.py gunicorn.conf.py ./

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]

CMD ["sh", "-c", "exec gunicorn -c gunicorn.conf.py wsgi:app"]

# The full server: TensorFlow CPU, every model format.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    PORT=8000 \
    SERVING_MODEL_DIR=/app/models \
    SERVING_LOG_FORMAT=json

WORKDIR /app

# Dependencies first, so code changes do not reinstall TensorFlow.
COPY requirements.txt .
RUN pip install --no-deps -r requirements.txt

RUN groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --home-dir /app --shell /usr/sbin/nologin serving

COPY --chown=10001:10001 app/ app/
COPY --chown=10001:10001 models/ models/
COPY --chown=10001:10001 wsgi.py gunicorn.conf.py ./

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]

CMD ["sh", "-c", "exec gunicorn -c gunicorn.conf.py wsgi:app"]
