"""A tiny HTTP server on 127.0.0.1 for download tests, started and stopped by the test."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ArchiveServer:
    """Serves ``routes``: path -> bytes.  Special behaviours per path:

    ``truncated`` paths announce their full length but send half and hang up;
    ``flaky`` paths answer 503 to their first request.
    """

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.flaky: set[str] = set()
        self.requests: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                server.requests[self.path] += 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                if self.path in server.flaky and server.requests[self.path] == 1:
                    self.send_error(503)
                    return
                body = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncated:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "ArchiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
