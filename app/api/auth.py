"""Bearer tokens: management routes always need one; inference and metadata when SERVING_REQUIRE_TOKEN=true.

A WSGI middleware in front of Flask (like `app.api.admission`), so a refused request costs no Flask
request context and a request that needs no token costs one test of its path. Health endpoints never
need a token, `/metrics` only with SERVING_METRICS_TOKEN_REQUIRED=true. With no token configured,
management routes answer 403 `management_disabled`: they are never open by default.

Tokens come from SERVING_API_TOKENS (comma-separated) and SERVING_API_TOKENS_FILE (one a line, `#`
comments), the file re-read when its mtime, size or inode changes. A presented token is compared with
`hmac.compare_digest` against every configured one (their SHA-256 digests, so neither the match nor the
length shows in the timing). Tokens are never logged nor put in an answer.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from app import errors
from app.api.responses import error_payload, style_for_path
from app.errors import ConfigError
from app.settings import Settings

log = logging.getLogger(__name__)

MANAGEMENT_PREFIX = "/v2/repository"  # the repository index, and the lifecycle's load/unload
METRICS_PATH = "/metrics"
HEALTH_PATHS = frozenset({"/health", "/health/ready", "/v2/health/live", "/v2/health/ready"})
MODEL_READY = re.compile(r"/v2/models/[^/]+(?:/versions/[0-9]+)?/ready")
REALM = 'Bearer realm="keras-model-server"'
TOKEN_SETTINGS = "SERVING_API_TOKENS or SERVING_API_TOKENS_FILE"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenSource:
    """The configured tokens (as digests): the fixed ones and those of the tokens file, re-read when it changes."""

    def __init__(self, tokens: str | None, path: Path | None):
        self.fixed = tuple(_digest(t.strip().encode()) for t in (tokens or "").split(",") if t.strip())
        self.path = path
        self._lock = threading.Lock()
        self._file_key: tuple[int, int, int] | None = None
        self._from_file: tuple[bytes, ...] = ()
        if path is not None:
            try:
                self._reload(os.stat(path))
            except OSError as exc:
                raise ConfigError(f"SERVING_API_TOKENS_FILE={str(path)!r} cannot be read: {exc.strerror}") from None

    @property
    def configured(self) -> bool:
        """Whether any token source is set (an empty tokens file still counts: it may be filled later)."""
        return bool(self.fixed) or self.path is not None

    def accepts(self, presented: bytes) -> bool:
        """Whether `presented` is one of the configured tokens; compared with every one, in constant time each."""
        given = _digest(presented)
        matched = False
        for token in self.fixed + self._file_tokens():
            matched |= hmac.compare_digest(given, token)
        return matched

    def _file_tokens(self) -> tuple[bytes, ...]:
        """The tokens file's digests, re-read when the file changed; none while it is missing."""
        if self.path is None:
            return ()
        try:
            stat = os.stat(self.path)
        except OSError:
            if self._file_key is not None:
                log.warning("%s cannot be read: no token from it is accepted until it is back", self.path)
                self._file_key, self._from_file = None, ()
            return ()
        if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._file_key:
            try:
                self._reload(stat)
            except OSError:
                return ()
        return self._from_file

    def _reload(self, stat: os.stat_result) -> None:
        with self._lock:
            lines = Path(self.path).read_bytes().splitlines()  # type: ignore[arg-type]
            self._from_file = tuple(_digest(line.strip()) for line in lines
                                    if line.strip() and not line.lstrip().startswith(b"#"))
            self._file_key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        log.info("read %d token(s) from %s", len(self._from_file), self.path)


def is_public(path: str) -> bool:
    """Health endpoints: never behind a token (a probe carries none)."""
    return path in HEALTH_PATHS or MODEL_READY.fullmatch(path) is not None


class RequireTokens:
    """WSGI middleware: answer 401 (or 403 `management_disabled`) to a request its route's token rule refuses."""

    def __init__(self, wsgi_app: WSGIApp, settings: Settings):
        secret = settings.api_tokens.get_secret_value() if settings.api_tokens else None
        self.wsgi_app, self.tokens = wsgi_app, TokenSource(secret, settings.api_tokens_file)
        self.require_all, self.metrics_protected = settings.require_token, settings.metrics_token_required
        for name, on in (("SERVING_REQUIRE_TOKEN", self.require_all),
                         ("SERVING_METRICS_TOKEN_REQUIRED", self.metrics_protected)):
            if on and not self.tokens.configured:
                raise ConfigError(f"{name}=true needs a token: set {TOKEN_SETTINGS}")
        # Without SERVING_REQUIRE_TOKEN only these prefixes are looked at ("//": paths to normalise first).
        self.guarded = (MANAGEMENT_PREFIX, "//") + ((METRICS_PATH,) if self.metrics_protected else ())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not self.require_all and not path.startswith(self.guarded) and "//" not in path:
            return self.wsgi_app(environ, start_response)
        if "//" in path:
            path = re.sub("/{2,}", "/", path)
        error = self.refusal(path, environ.get("HTTP_AUTHORIZATION"))
        if error is None:
            return self.wsgi_app(environ, start_response)
        return self._answer(error, path, start_response)

    def refusal(self, path: str, authorization: str | None) -> errors.ServingError | None:
        """Why this request may not pass (None: it may), from its normalised path and Authorization header."""
        management = path.startswith(MANAGEMENT_PREFIX)
        if path == METRICS_PATH:
            needed = self.metrics_protected
        else:
            needed = management or (self.require_all and not is_public(path))
        if not needed:
            return None
        if management and not self.tokens.configured:
            return errors.ManagementDisabled(
                f"management_disabled: no token is configured; set {TOKEN_SETTINGS} to enable the management "
                "endpoints",
                {"settings": ["SERVING_API_TOKENS", "SERVING_API_TOKENS_FILE"]})
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return errors.Unauthorized(f"{path} needs a token: send `Authorization: Bearer TOKEN`")
        if not self.tokens.accepts(credentials.strip().encode("latin-1")):
            return errors.Unauthorized("the bearer token is not valid", code="invalid_token")
        return None

    @staticmethod
    def _answer(error: errors.ServingError, path: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, payload, headers = error_payload(error, style_for_path(path))
        if status == 401:
            headers["WWW-Authenticate"] = REALM + (', error="invalid_token"' if error.code == "invalid_token" else "")
        body = orjson.dumps(payload)
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers.items()])
        return [body]
