# Keras model server: gunicorn + Flask, TensorFlow CPU. Serves every model in /app/models.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    PORT=8000 \
    SERVING_MODEL_DIR=/app/models

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
