"""Keras model server: `create_app` builds the Flask app (config, registry, blueprints, errors)."""
from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from app import errors
from app.config import load_config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: settings, model registry (loading in the background), routes."""
    from app.api import native, responses, tfserving, v2
    from app.api.admission import LoadShedder
    from app.api.request_ids import TagRequestIds
    from app.cli import models_cli
    from app.serving.registry import ModelRegistry
    from app.serving.repository import scan_repository

    app = Flask(__name__)
    app.config.update(load_config(test_config=test_config))
    _configure_logging(app.config["LOG_LEVEL"])

    registry = ModelRegistry(
        scan_repository(app.config["MODEL_DIR"], app.config),
        default_model=app.config["DEFAULT_MODEL"],
        strict_readiness=app.config["STRICT_READINESS"],
        tf_threads=(app.config["TF_INTRA_OP_THREADS"], app.config["TF_INTER_OP_THREADS"]),
        loading_wait=app.config["LOADING_WAIT"],
    )
    app.extensions["registry"] = registry
    app.register_blueprint(native.bp)
    app.cli.add_command(models_cli)
    app.register_blueprint(tfserving.bp)
    app.register_blueprint(v2.bp)

    app.register_error_handler(errors.ServingError, responses.error_response)
    app.register_error_handler(HTTPException, lambda exc: responses.error_response(responses.http_error(exc)))
    app.register_error_handler(Exception, responses.internal_error)

    app.extensions["load_shedder"] = LoadShedder(
        app.wsgi_app, app.url_map, app.config, loading=lambda: not registry.wait_until_settled(0))
    app.wsgi_app = TagRequestIds(app.extensions["load_shedder"])  # type: ignore[method-assign]

    registry.start_loading()
    return app


def _configure_logging(level: str) -> None:
    """Send the `app` loggers to stdout (gunicorn's own logs go there too)."""
    logger = logging.getLogger("app")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
