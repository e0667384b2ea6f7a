"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real OpenAI-compatible server.

Each POST gets the next fault of a repeating schedule — ``ok`` (forwarded), ``429``, ``500``,
``timeout`` (the proxy holds the request longer than the client waits, then closes), ``drop`` (the
connection is closed without an answer) or ``truncate`` (a 200 with half a JSON body) — so a client's
retry path meets every failure a real server or load balancer produces.

>>> from tests.tools.faultproxy import FaultProxy
>>> with FaultProxy("http://127.0.0.1:8080/v1", ["ok", "429", "drop"], hold_s=2.0) as url:  # doctest: +SKIP
...     ...  # point the openai backend at url
"""
from __future__ import annotations

import http.server
import itertools
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any, Iterable

FAULTS = ("ok", "429", "500", "timeout", "drop", "truncate")


class FaultProxy:
    """Context manager yielding the proxy's ``/v1`` base URL; ``counts`` tallies the faults served."""

    def __init__(self, upstream: str, schedule: Iterable[str], hold_s: float = 3.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.schedule = list(schedule)
        bad = set(self.schedule) - set(FAULTS)
        if bad or not self.schedule:
            raise ValueError(f"schedule must be a non-empty list of {FAULTS}, got {self.schedule}")
        self.hold_s = hold_s
        self.counts: Counter[str] = Counter()
        self._next = itertools.cycle(self.schedule)
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    def _fault(self) -> str:
        with self._lock:
            f = next(self._next)
            self.counts[f] += 1
            return f

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._fault()
                if fault in ("429", "500"):
                    msg = b'{"error": "injected"}'
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if fault == "timeout":
                    time.sleep(proxy.hold_s)
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                req = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "authorization")},
                                             method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=600) as resp:
                        status, payload = resp.status, resp.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                if fault == "truncate":
                    payload = payload[: len(payload) // 2]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> str:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
