"""A tiny HTTP endpoint serving /metrics on a loopback address (for the archiver).

One request at a time (the standard library's single-threaded HTTPServer): a
scrape every few seconds needs no more, and a stuck client costs at most the
socket timeout. Only GET /metrics answers with metrics; everything else is 404.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Callable

from tracker_backup.metrics.exposition import CONTENT_TYPE

log = logging.getLogger(__name__)
SOCKET_TIMEOUT = 10.0  # seconds a client may take to send its request


class MetricsServer(http.server.HTTPServer):
    """HTTPServer bound to one address, rendering fresh text for each scrape."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], render: Callable[[], str]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.render = render
        self.thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return self.server_address[1]

    def start(self) -> MetricsServer:
        """Serve in a daemon thread; return self."""
        self.thread = threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self.thread is not None:
            self.shutdown()
            self.thread.join()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = SOCKET_TIMEOUT
    server_version = "tracker-backup"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")
            return
        try:
            body = self.server.render().encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - one failed scrape must not stop the server
            log.warning("metrics: could not collect: %s", exc)
            self._reply(500, "text/plain; charset=utf-8", f"could not collect: {exc}\n".encode())
            return
        self._reply(200, CONTENT_TYPE, body)

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        log.debug("metrics http: " + format, *args)


def start_server(address: tuple[str, int], render: Callable[[], str]) -> MetricsServer:
    """Bind `address` and serve `render()` on /metrics from a background thread."""
    return MetricsServer(address, render).start()
