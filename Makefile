# Quick start: `make serve` (demo model on :8000) and `make test` (whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

# The C helpers of the request path; the server also runs without them (make says so if gcc is missing).
NATIVE := app/_speedups$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)

.PHONY: serve test lint bench train-demo native clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.txt
	touch $@

$(NATIVE): $(BIN)/.runtime native/speedups.c native/numbers.h native/pow5_table.py native/build.py
	@$(BIN)/python native/build.py && touch $@ || echo "warning: the C helpers did not build (is gcc installed?): \
	the server runs without them (JSON tensors parsed by simdjson) and their tests are skipped"

native: $(NATIVE)

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-dev.txt
	touch $@

serve: $(BIN)/.runtime $(NATIVE)
	PORT=$(PORT) $(BIN)/python -m gunicorn -c gunicorn.conf.py wsgi:app

test: $(BIN)/.dev $(NATIVE)
	$(BIN)/python -m pytest

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

bench: $(BIN)/.dev $(NATIVE)
	$(BIN)/python -m bench $(BENCH_ARGS)

train-demo: $(BIN)/.runtime
	$(BIN)/python scripts/train_iris.py

clean:
	rm -rf $(VENV) .pytest_cache build app/_speedups*.so
