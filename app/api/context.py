"""The current app's data plane and settings, for the views of every surface."""
from __future__ import annotations

from flask import current_app

from app.api.dataplane import DataPlane
from app.settings import Settings


def dataplane() -> DataPlane:
    """The app's data plane (it holds the model registry)."""
    return current_app.extensions["dataplane"]


def settings() -> Settings:
    """The app's typed settings."""
    return current_app.extensions["settings"]
