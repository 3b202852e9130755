"""The request body, read once and whole or refused: never cut at the limit, never silently empty.

The length is checked before anything is read; a chunked body is read to its terminating chunk or
refused (over the limit: 413; malformed: 400); a gzip or deflate body (Content-Encoding, or a
transfer coding before `chunked`) must decompress to its exact end (checksum read, nothing after
it) within the limit.
"""
from __future__ import annotations

import zlib
from typing import Any

from werkzeug.wsgi import get_content_length

from app import errors

try:  # gunicorn reports a malformed chunk or trailer from wsgi.input.read with its own errors
    from gunicorn.http.errors import ParseException as _ServerParseError
except ImportError:  # pragma: no cover - served without gunicorn
    _ServerParseError = ValueError

_CACHE_KEY = "serving.request_body"  # the body, or the error reading it raised
_WINDOWS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate: the zlib format (RFC 9110)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The raw request body, decompressed for gzip or deflate (kept in the environ: a second call
    answers the same without reading again)."""
    cached = environ.get(_CACHE_KEY)
    if isinstance(cached, errors.ServingError):
        raise cached
    if cached is None:
        try:
            cached = _decode(environ, _read_raw(environ, limit), limit)
        except errors.ServingError as exc:
            environ[_CACHE_KEY] = exc
            raise
        environ[_CACHE_KEY] = cached
    return cached


def _too_large(what: str, limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes", {"limit": limit})


def _read_raw(environ: dict[str, Any], limit: int) -> bytes:
    """The body as sent: in one read of Content-Length bytes (reading a large body in small steps made
    the server copy what it had read ahead on every step), else up to the end of a chunked body."""
    length = get_content_length(environ)
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length is not None and length > limit:
        raise _too_large(f"the body of {length} bytes", limit)
    if length is None and not (chunked or environ.get("wsgi.input_terminated")):
        return b""  # no length and no end the server can see: no body (as werkzeug reads it)
    try:
        raw = environ["wsgi.input"].read(limit + 1 if length is None else length)
    except (_ServerParseError, OSError) as exc:  # gunicorn's chunk errors, or the client went away
        code = "invalid_chunked_body" if chunked else "incomplete_body"
        raise errors.BadRequest(f"the body could not be read: {exc}", code=code) from None
    if length is None and len(raw) > limit:
        raise _too_large("the chunked body", limit)
    if length is not None and len(raw) < length:
        raise errors.BadRequest(f"the body ended after {len(raw)} of its {length} bytes", code="incomplete_body")
    return raw


def _decode(environ: dict[str, Any], raw: bytes, limit: int) -> bytes:
    """`raw` with its codings undone, the last applied first: the transfer codings before `chunked`
    (gunicorn undoes `chunked` alone and passes gzip or deflate on), then the Content-Encoding ones."""
    content = (environ.get("HTTP_CONTENT_ENCODING") or "").split(",")
    transfer = environ.get("HTTP_TRANSFER_ENCODING", "").split(",")
    codings = [c.strip().lower() for c in content + transfer]
    body = raw
    for coding in reversed([c for c in codings if c not in ("", "identity", "chunked")]):
        body = _decompress(body, coding, limit)
    return body


def _decompress(data: bytes, coding: str, limit: int) -> bytes:
    """`data` decompressed, checked to end exactly where the stream ends (checksum read, nothing after)."""
    if coding not in _WINDOWS:
        raise errors.UnsupportedMediaType(f"the coding {coding!r} is not supported (gzip, deflate)",
                                          {"content_encoding": coding}, code="unsupported_content_encoding")
    decompressor = zlib.decompressobj(_WINDOWS[coding])
    try:
        body = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise errors.BadRequest(f"the body is not valid {coding}: {exc}", code="invalid_encoding") from None
    if len(body) > limit:
        raise _too_large("the decompressed body", limit)
    if not decompressor.eof:
        raise errors.BadRequest(f"the {coding} body is cut short (no end of stream or checksum)",
                                code="invalid_encoding")
    if decompressor.unused_data:
        raise errors.BadRequest(f"{len(decompressor.unused_data)} bytes follow the end of the {coding} stream",
                                code="invalid_encoding")
    return body
