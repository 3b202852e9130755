"""Shared fixtures: a model folder of real Keras models, the app, its clients."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from tests.model_builders import build_repository

MANAGEMENT_TOKEN = "test-management-token"  # the app fixture's token: management routes need one


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder built once per session (dense, two inputs, two outputs, CNN, LSTM, legacy, versions, corrupt)."""
    return build_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def app(model_repo: Path):
    """The app serving `model_repo`, with loading settled: one per test module, so no state leaks
    across modules (each loads the models anew, in about the time of one module's tests)."""
    application = create_app({"TESTING": True, "MODEL_DIR": model_repo, "STRICT_READINESS": False,
                              "MAX_REQUEST_ROWS": 500, "MAX_BATCH_SIZE": 16, "API_TOKENS": MANAGEMENT_TOKEN})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def management_headers() -> dict[str, str]:
    """The Authorization header the app fixture accepts."""
    return {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
