# Quick start: `make serve` (demo model on :8000) and `make test` (whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: serve test lint bench train-demo clean image image-test

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-dev.txt
	touch $@

serve: $(BIN)/.runtime
	PORT=$(PORT) $(BIN)/python -m gunicorn -c gunicorn.conf.py wsgi:app

test: $(BIN)/.dev
	$(BIN)/python -m pytest

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

bench: $(BIN)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.optimize
	$(BIN)/python -m bench.explain
	$(BIN)/python -m bench.grpc
	$(BIN)/python -m bench.rollout

# The container image, with podman (no Docker engine needed); not part of `make test` (minutes, TensorFlow
# download). Where python:3.11-slim cannot be pulled it is built on a debootstrap stand-in (it says so).
image:
	scripts/build_image.sh

image-test:
	python3 scripts/image_test.py $(or $(IMAGE),keras-serve:latest) $(MODELS)

train-demo: $(BIN)/.runtime
	$(BIN)/python scripts/train_iris.py

clean:
	rm -rf $(VENV) .pytest_cache build
