"""An answer's status line, headers and body in one socket write when the body is one known-length chunk.

gunicorn's `Response.write` sends the headers, then the body, in two writes. Behind nginx, an instance
killed between the two leaves nginx a header it has already passed on to its client: it cannot retry
that request on the next instance, and the client gets an answer cut short (measured: up to one per
request thread of the killed instance, tests/e2e/test_nginx.py). A Flask answer that is not streamed is
one bytes chunk of the length its Content-Length says, so here the headers and that chunk go out in one
`sendall`: a kill before it leaves nginx nothing (it retries), a kill after it leaves nginx the whole
answer. A streamed or chunked answer, a file, and a body over `JOIN_LIMIT` are written as gunicorn does.

Written against gunicorn 27.0.1 (requirements.txt): `handle_request` is gthread's own with one change
(the response class); `GUNICORN_SOURCES` holds the hashes of the gunicorn methods this copies or relies
on, and tests/test_gunicorn_worker.py fails when gunicorn's change.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from gunicorn import util
from gunicorn.http import wsgi

JOIN_LIMIT = 4 * 1024 * 1024  # larger bodies are not copied to join them (one write would not be atomic anyway)

# sha256 of inspect.getsource (first 16 hex digits) of the gunicorn methods written against.
GUNICORN_SOURCES = {
    "gunicorn.workers.gthread.ThreadWorker.handle_request": "6d0de5b919102efc",
    "gunicorn.http.wsgi.Response.write": "a13659ff072c00e1",
    "gunicorn.http.wsgi.Response.send_headers": "7aff3b7d004fc17b",
}


class OneWriteResponse(wsgi.Response):
    """gunicorn's HTTP/1 response, writing the headers with the body when the body is one whole chunk."""

    def write(self, arg: bytes) -> None:
        """The first write of a whole known-length body goes out with the headers; others as gunicorn's."""
        if (not self.headers_sent and isinstance(arg, bytes) and not self.chunked and not self._omits_body
                and self.response_length == len(arg) and len(arg) <= JOIN_LIMIT):
            self.sock.sendall(self.head() + arg)
            self.headers_sent, self.sent = True, len(arg)
            return
        super().write(arg)

    def head(self) -> bytes:
        """The status line and headers, exactly as `send_headers` writes them."""
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        return util.to_bytestring("{}\r\n".format("".join(lines)), "latin-1")


class OneWriteHandling:
    """For a gthread worker: gunicorn 27.0.1's `ThreadWorker.handle_request`, answering with `OneWriteResponse`."""

    cfg: Any
    log: Any
    wsgi: Any
    nr: int
    max_requests: int
    alive: bool
    keepalived_conns: Any
    max_keepalived: int

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Serve one request (gunicorn's, with the one-write response); whether to keep the connection."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg,
                                        response_class=OneWriteResponse)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()

            if not self.alive or not self.cfg.keepalive or len(self.keepalived_conns) >= self.max_keepalived:
                resp.force_close()

            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()

            if resp.should_close():
                self.log.debug("Closing connection.")
                return False
        except OSError:
            raise  # gunicorn's handle() deals with socket errors
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                # Timeout abort is SystemExit. If we already started the response, writing a 500 on the
                # same socket corrupts it.
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - gunicorn's: a hook's failure is logged, not answered
                self.log.exception("Exception in post_request hook")

        return True
