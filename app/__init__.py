"""Keras model server: `create_app` builds the Flask app (settings, data plane, routes, errors)."""
from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: settings, the manager (loading when served), the data plane, routes."""
    from werkzeug.exceptions import HTTPException

    from app import errors, observability
    from app.api import docs, explain, native, repository, responses, tfserving, v2
    from app.api.admission import LoadShedder
    from app.api.auth import RequireTokens
    from app.api.dataplane import DataPlane
    from app.api.direct import DirectPredict
    from app.api.request_ids import TagRequestIds
    from app.api.routing import VersionConverter
    from app.cli import models_cli
    from app.logs import configure_logging
    from app.observability.metrics import observed_loader, publish_state
    from app.serving.control import LocalControl
    from app.serving.control_state import read_state
    from app.serving.control_worker import ControlLink
    from app.serving.lazy_loader import TensorFlowLoader
    from app.serving.publishing import PublishingCheck
    from app.serving.registry import ModelRegistry
    from app.serving.source import plan_models
    from app.serving.watcher import Watcher, current_overrides
    from app.settings import SETTING_NAMES, load_settings

    overrides = test_config or {}
    settings = load_settings({key: value for key, value in overrides.items() if key.upper() in SETTING_NAMES})
    app = Flask(__name__)
    app.config.update({key: value for key, value in overrides.items() if key.upper() not in SETTING_NAMES})
    configure_logging(settings.log_level, settings.log_format)

    control_state = read_state(settings.runtime_dir)  # a worker started later comes up as the API last set
    publishing = PublishingCheck()  # the watcher's scans leave out files still being copied
    registry = ModelRegistry.from_plans(
        plan_models(settings.model_dir, settings, control_state.overrides(), stable=publishing),
        observed_loader(TensorFlowLoader((settings.tf_intra_op_threads, settings.tf_inter_op_threads)),
                        settings.metrics),
        default_model=settings.default_model, strict_readiness=settings.strict_readiness,
        loading_wait=settings.loading_wait, on_state=publish_state if settings.metrics else None)
    dataplane = DataPlane(registry, settings.max_request_rows)
    app.extensions.update(settings=settings, registry=registry, dataplane=dataplane, control_state=control_state,
                          publishing=publishing)  # every re-plan should pass stable=publishing
    # Polling off, a load through the API takes every file on disk (no later scan would see a copy settle).
    watched = publishing if settings.poll_seconds > 0 else None
    link = ControlLink()  # under gunicorn the worker binds it: the watcher follows the control generation
    watcher = Watcher(registry, lambda: plan_models(settings.model_dir, settings, current_overrides(app),
                                                    stable=watched), settings.poll_seconds,
                      generation=link.generation, report=link.report, apply_timeout=settings.control_timeout)
    app.extensions.update(watcher=watcher, control_link=link)
    registry.when_settled(watcher.start)  # SERVING_POLL_SECONDS > 0: re-plan and apply every N s
    app.extensions["control"] = LocalControl(  # gunicorn's workers replace it with an InstanceControl
        registry, settings, lambda state: plan_models(settings.model_dir, settings, state.overrides(), stable=watched),
        control_state)
    app.url_map.converters["int"] = VersionConverter  # before the routes: a version beyond 64 bits is no route
    for blueprint in (native.bp, tfserving.bp, v2.bp, repository.bp, docs.bp, explain.bp):
        app.register_blueprint(blueprint)
    app.cli.add_command(models_cli)

    app.register_error_handler(errors.ServingError, responses.error_response)
    app.register_error_handler(HTTPException, responses.http_error_response)
    app.register_error_handler(Exception, responses.internal_error)
    app.make_default_options_response = responses.options_response  # type: ignore[method-assign]
    app.session_interface = responses.NoSessions()

    flask_app = app.wsgi_app
    if settings.direct_predict:  # POST /predict without Flask's request context, answered as its view answers
        flask_app = DirectPredict(flask_app, dataplane, settings.max_content_length)
    shedder = LoadShedder(flask_app, app.url_map, settings, loading=lambda: not registry.wait_until_settled(0))
    app.extensions["load_shedder"] = shedder
    app.wsgi_app = TagRequestIds(RequireTokens(shedder, settings))  # type: ignore[method-assign]
    observability.install(app, settings, registry)  # metrics and access line: outside, so they see every answer
    served = app.wsgi_app

    def start_loading_then_serve(environ: dict[str, Any], start_response: Any) -> Any:
        """The first request (`flask run`) starts loading, then leaves the path: a CLI command loads none."""
        registry.start_loading()
        if app.wsgi_app is start_loading_then_serve:  # (not if someone wrapped the app since)
            app.wsgi_app = served  # type: ignore[method-assign]
        return served(environ, start_response)

    app.wsgi_app = start_loading_then_serve  # type: ignore[method-assign]
    return app
