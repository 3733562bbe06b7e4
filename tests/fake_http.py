"""The HTTP side of the FAKE W&B server: JSON in and out, routed to the server's handlers.

wandb-core sends GraphQL as ``POST /graphql``, a run's stream as ``POST .../file_stream``,
file uploads as ``PUT`` to the URLs the server handed out, and telemetry elsewhere (answered
with an empty object). :class:`Faults` are what a test queues: HTTP errors, and holds (a
held request is then dropped, never seen by the backend: HTTP 504, a gateway's timeout).
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Routes(Protocol):
    def graphql(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    def hold(self, request: dict[str, Any]) -> bool: ...

    def stream(self, path: str, body: bytes) -> dict[str, Any]: ...

    def upload(self, path: str) -> None: ...


def operation_name(request: dict[str, Any]) -> str:
    """The GraphQL operation's name (``mutation Heartbeat(...)``: ``Heartbeat``)."""
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", request.get("query") or "")
    return match.group(1) if match else "?"


class Faults:
    """What a test makes the server do wrong, per GraphQL operation (e.g. "Heartbeat")."""

    def __init__(self) -> None:
        self._fail: dict[str, list[int]] = {}  # operation -> HTTP statuses to answer first
        self._delays: dict[str, list[float]] = {}  # operation -> seconds to hold calls first
        self.delayed: list[tuple[str, float]] = []  # (operation, monotonic time) held
        self._released = threading.Event()  # ends every hold
        self._faults_lock = threading.Lock()

    def fail(self, operation: str, *statuses: int) -> None:
        """Answer the next calls of ``operation`` with these HTTP statuses."""
        with self._faults_lock:
            self._fail.setdefault(operation, []).extend(statuses)

    def delay(self, operation: str, *seconds: float) -> None:
        """Hold the next calls of ``operation`` this long each (at most until ``release``),
        then drop them: past the client's timeout, it has given up and retried."""
        with self._faults_lock:
            self._delays.setdefault(operation, []).extend(seconds)

    def release(self) -> None:
        self._released.set()

    def failure(self, operation: str) -> int | None:
        """The status to answer this call with instead, if one is queued."""
        with self._faults_lock:
            queued = self._fail.get(operation)
            return queued.pop(0) if queued else None

    def hold(self, request: dict[str, Any]) -> bool:
        """Hold this call if a delay is queued for it (outside the server's lock)."""
        operation = operation_name(request)
        with self._faults_lock:
            queued = self._delays.get(operation)
            if not queued:
                return False
            self.delayed.append((operation, time.monotonic()))
            seconds = queued.pop(0)
        self._released.wait(seconds)
        return True


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
                request = json.loads(body or b"{}")
                if routes.hold(request):  # too slow for the client: it has given up by now
                    return self._send(504, {"errors": [{"message": "fake server timeout"}]})
                self._send(*routes.graphql(request))
            except (BrokenPipeError, ConnectionResetError):
                return  # the client hung up (its timeout): nobody to answer
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
