"""The HTTP side of the FAKE W&B server: JSON in and out, routed to the server's handlers.

wandb-core sends GraphQL as ``POST /graphql``, a run's stream as ``POST .../file_stream``,
file uploads as ``PUT`` to the URLs the server handed out, and telemetry elsewhere (answered
with an empty object).
"""

from __future__ import annotations

import json
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Routes(Protocol):
    def graphql(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    def stream(self, path: str, body: bytes) -> dict[str, Any]: ...

    def upload(self, path: str) -> None: ...


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (wandb-core's timeouts, a killed agent) is not an error."""


def handler_for(routes: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self._body()
            try:
                if self.path.endswith("/file_stream"):
                    return self._send(200, routes.stream(self.path, body))
                if self.path.rstrip("/") != "/graphql":
                    return self._send(200, {})  # telemetry and the like
                self._send(*routes.graphql(json.loads(body or b"{}")))
            except Exception as exc:  # a bug of the fake: say so, never hang the client
                traceback.print_exc()
                self._send(500, {"errors": [{"message": f"fake server bug: {exc!r}"}]})

        def do_GET(self) -> None:  # noqa: N802
            self._send(200, {})

        def do_PUT(self) -> None:  # noqa: N802 - a file upload
            self._body()
            routes.upload(self.path)
            self._send(200, {})

        def _body(self) -> bytes:
            size = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(size) if size else b""

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler
