"""read_body: the whole body or one of our errors, never a body cut at the limit or silently empty.

Chunked bodies are read through gunicorn's own chunked reader (what wsgi.input is under gunicorn);
tests/e2e/test_gunicorn_errors.py sends the same cases to a real server.
"""
from __future__ import annotations

import gzip
import io
import zlib

import pytest
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.unreader import IterUnreader
from werkzeug.test import EnvironBuilder

from app import errors
from app.api.body import read_body

LIMIT = 1000


class CountingStream(io.BytesIO):
    """A body stream that counts its reads."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class Unreadable(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


def environ(body: bytes = b"", *, stream=None, **headers: str) -> dict:
    env = EnvironBuilder(method="POST", data=body, headers=headers).get_environ()
    if stream is not None:
        env["wsgi.input"] = stream
    return env


def chunked_environ(wire: bytes, **headers: str) -> dict:
    """A chunked request whose wsgi.input is gunicorn's chunked body reader over `wire`."""
    env = EnvironBuilder(method="POST", headers={"Transfer-Encoding": "chunked", **headers}).get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input_terminated"] = True
    env["wsgi.input"] = Body(ChunkedReader(object(), IterUnreader([wire[i:i + 7] for i in range(0, len(wire), 7)])))
    return env


def chunks(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def test_a_body_with_a_content_length_is_read_in_one_read():
    stream = CountingStream(b"x" * 600)
    env = environ(b"x" * 600, stream=stream)
    assert read_body(env, LIMIT) == b"x" * 600
    assert stream.reads == 1


def test_a_second_call_answers_the_same_without_reading_again():
    env = environ(b'{"a": 1}')
    assert read_body(env, LIMIT) == b'{"a": 1}'
    env["wsgi.input"] = Unreadable()
    assert read_body(env, LIMIT) == b'{"a": 1}'


def test_a_content_length_over_the_limit_is_refused_before_reading():
    env = environ(b"x" * (LIMIT + 1), stream=Unreadable())
    with pytest.raises(errors.PayloadTooLarge) as raised:
        read_body(env, LIMIT)
    assert raised.value.details == {"limit": LIMIT}


def test_a_body_shorter_than_its_content_length_is_refused():
    env = environ(b"x" * 100, stream=io.BytesIO(b"x" * 60))
    with pytest.raises(errors.BadRequest) as raised:
        read_body(env, LIMIT)
    assert raised.value.code == "incomplete_body"


def test_a_failed_read_is_not_retried_on_the_second_call():
    env = environ(b"x" * 100, stream=io.BytesIO(b"x" * 60))
    with pytest.raises(errors.BadRequest):
        read_body(env, LIMIT)
    env["wsgi.input"] = Unreadable()
    with pytest.raises(errors.BadRequest):
        read_body(env, LIMIT)


def test_no_length_and_no_chunking_is_an_empty_body():
    env = environ(stream=Unreadable())
    env.pop("CONTENT_LENGTH", None)
    assert read_body(env, LIMIT) == b""


def test_a_chunked_body_is_read_to_its_end():
    assert read_body(chunked_environ(chunks(b'{"instances": ', b"[[1, 2]]}")), LIMIT) == b'{"instances": [[1, 2]]}'


@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT])
def test_a_chunked_body_up_to_the_limit_is_read_whole(size):
    assert read_body(chunked_environ(chunks(b"a" * (size - 1), b"b")), LIMIT) == b"a" * (size - 1) + b"b"


@pytest.mark.parametrize("parts", [(b"a" * (LIMIT + 1),), (b"a" * LIMIT, b"b"), (b"[1]", b" " * LIMIT)],
                         ids=["one large chunk", "one byte over", "valid JSON padded past the limit"])
def test_a_chunked_body_over_the_limit_is_refused_not_cut(parts):
    with pytest.raises(errors.PayloadTooLarge):
        read_body(chunked_environ(chunks(*parts)), LIMIT)


@pytest.mark.parametrize("wire", [
    b"zz\r\nabc\r\n0\r\n\r\n",          # a chunk size that is not hex
    b"3\r\nabcXY0\r\n\r\n",             # a chunk without its CRLF
    b"5\r\nab",                          # the body stops inside a chunk
    b"3\r\nabc\r\n",                     # no last chunk
    b"3\r\nabc\r\n0\r\n",                # the last chunk without the empty line after it
    b"3;\x01\r\nabc\r\n0\r\n\r\n",      # a malformed chunk extension
], ids=["bad size", "missing terminator", "cut in a chunk", "no last chunk", "cut trailer", "bad extension"])
def test_malformed_chunking_answers_invalid_chunked_body(wire):
    with pytest.raises(errors.BadRequest) as raised:
        read_body(chunked_environ(wire), LIMIT)
    assert raised.value.code == "invalid_chunked_body" and raised.value.status == 400


DOCUMENT = b'{"instances": [[1.5, 2.5, 3.5, 4.5]]}'


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                                ("GZIP ", gzip.compress)])
def test_gzip_and_deflate_bodies_are_decompressed(encoding, compress):
    assert read_body(environ(compress(DOCUMENT), **{"Content-Encoding": encoding}), LIMIT) == DOCUMENT


def test_a_compressed_chunked_body_is_decompressed():
    packed = gzip.compress(DOCUMENT)
    env = chunked_environ(chunks(packed[:10], packed[10:]), **{"Content-Encoding": "gzip"})
    assert read_body(env, LIMIT) == DOCUMENT


@pytest.mark.parametrize("encoding, body", [
    ("gzip", gzip.compress(DOCUMENT) + b"garbage"),
    ("gzip", gzip.compress(DOCUMENT)[:-4]),                  # the size field of the trailer cut off
    ("gzip", gzip.compress(DOCUMENT)[:-8]),                  # the whole trailer (CRC and size) cut off
    ("gzip", gzip.compress(DOCUMENT)[:-8] + b"\0" * 8),      # a wrong CRC
    ("gzip", DOCUMENT),                                       # not gzip at all
    ("deflate", zlib.compress(DOCUMENT) + b"\0"),
    ("deflate", zlib.compress(DOCUMENT)[:-2]),                # the Adler-32 checksum cut
], ids=["gzip trailing bytes", "gzip cut size", "gzip cut trailer", "gzip bad crc", "not gzip",
        "deflate trailing byte", "deflate cut checksum"])
def test_a_compressed_body_must_end_exactly(encoding, body):
    with pytest.raises(errors.BadRequest) as raised:
        read_body(environ(body, **{"Content-Encoding": encoding}), LIMIT)
    assert raised.value.code == "invalid_encoding"


def test_a_body_that_decompresses_past_the_limit_is_refused():
    with pytest.raises(errors.PayloadTooLarge):
        read_body(environ(gzip.compress(b" " * (LIMIT + 1)), **{"Content-Encoding": "gzip"}), LIMIT)
    assert read_body(environ(gzip.compress(b" " * LIMIT), **{"Content-Encoding": "gzip"}), LIMIT) == b" " * LIMIT


def test_an_unknown_content_encoding_is_refused():
    with pytest.raises(errors.UnsupportedMediaType) as raised:
        read_body(environ(DOCUMENT, **{"Content-Encoding": "br"}), LIMIT)
    assert raised.value.code == "unsupported_content_encoding" and raised.value.status == 415


def test_identity_is_the_body_as_sent():
    assert read_body(environ(DOCUMENT, **{"Content-Encoding": "identity"}), LIMIT) == DOCUMENT


def test_stacked_codings_are_undone_last_applied_first():
    """Content-Encoding gzip, then a deflate transfer coding before chunked (which gunicorn passes on)."""
    packed = zlib.compress(gzip.compress(DOCUMENT))
    env = chunked_environ(chunks(packed), **{"Content-Encoding": "gzip", "Transfer-Encoding": "deflate, chunked"})
    assert read_body(env, LIMIT) == DOCUMENT
    packed = zlib.compress(gzip.compress(DOCUMENT))
    assert read_body(environ(packed, **{"Content-Encoding": "gzip, deflate"}), LIMIT) == DOCUMENT
