"""A fake OpenAI-compatible endpoint on 127.0.0.1 for the tests of the API clients."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = tuple[int, object]
# A body that is cut off: the headers promise more bytes than are sent before the connection closes.
DROPPED = object()


class FakeServer:
    """An endpoint at `path` in a daemon thread; `behaviour` answers each POST.

    `failures` are (status, body) replies served, in order, before `behaviour` is asked.
    A str body is sent as is (for garbage replies), DROPPED is cut off mid-reply, anything
    else is sent as JSON. `gets` maps a path to the (status, body) a GET of it receives.
    """

    def __init__(self, path: str, behaviour: Callable[[dict], Reply]) -> None:
        self.path = path
        self.payloads: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.behaviour = behaviour
        self.failures: deque[Reply] = deque()
        self.gets: dict[str, Reply] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A handler still sleeping in a timeout test must not hold up teardown.
        self._httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _reply(self, payload: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.payloads.append(payload)
            self.headers.append(headers)
            scripted = self.failures.popleft() if self.failures else None
        return scripted if scripted is not None else self.behaviour(payload)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object) -> None:
                data = b'{"choices": [' if body is DROPPED else (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) + (100 if body is DROPPED else 0)))
                self.end_headers()
                self.wfile.write(data)
                if body is DROPPED:
                    self.close_connection = True

            def do_POST(self) -> None:
                if self.path != server.path:
                    self._send(404, {"error": "not found"})
                    return
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, body = server._reply(payload, dict(self.headers))
                try:
                    self._send(status, body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def do_GET(self) -> None:
                self._send(*server.gets.get(self.path, (404, {"error": "not found"})))

            def log_message(self, *args) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
